"""SRP render bundle: the code shared by every deployed function."""
