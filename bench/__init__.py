"""Benchmarks: `.venv/bin/python -m bench` (see docs/benchmarks.md)."""

from __future__ import annotations

# The harness forks emulators and functions after its gRPC clients are busy; gRPC's fork
# handlers can then block fork() itself. Must be set before grpc is first imported.
import local_stack  # noqa: F401  (sets GRPC_ENABLE_FORK_SUPPORT=false)
