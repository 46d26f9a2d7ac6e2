"""Deterministic simulation of the bundle: the real use cases in a simulated, faulty world."""
