"""`srp-bundle`: the operator CLI (assets, submit, status, show, retry, backfill, export).

Exit codes: 0 ok; 1 failures found or work left partial; 2 usage, configuration or
input-file error; 3 backend (emulator or project) unreachable; 130 interrupted.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from srp_bundle.cli import _assets, _backfill, _export, _inspect, _retry, _revoke, _submit
from srp_bundle.cli._backend import CliError, add_connection_flags

EXIT_OK = 0
EXIT_FAILURES = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_INTERRUPTED = 130

_EPILOG = """exit codes: 0 ok, 1 failures found or partial, 2 usage/configuration/input error,
3 backend unreachable, 130 interrupted. The emulator variables (FIRESTORE_EMULATOR_HOST,
PUBSUB_EMULATOR_HOST, STORAGE_EMULATOR_HOST) point every command at the local stack."""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every command."""
    parser = argparse.ArgumentParser(
        prog="srp-bundle",
        description=(
            "Operate SRP render batches: upload assets, submit, watch, inspect, retry, "
            "backfill, export."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    connection = argparse.ArgumentParser(add_help=False)
    add_connection_flags(connection)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _assets.add_parser(commands, [connection])
    _submit.add_parser(commands, [connection])
    _inspect.add_parsers(commands, [connection])
    _retry.add_parser(commands, [connection])
    _backfill.add_parser(commands, [connection])
    _export.add_parser(commands, [connection])
    _revoke.add_parser(commands, [connection])
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; return its exit code (never raises for expected failures)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_request:  # --help (0) or a usage error (2), already printed
        return exit_request.code if isinstance(exit_request.code, int) else EXIT_USAGE
    try:
        code: int = args.handler(args)
    except CliError as error:
        print(f"srp-bundle {args.command}: error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print(f"srp-bundle {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return code
