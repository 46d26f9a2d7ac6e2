"""`revoke-tokens`: make every callback token issued for some requests stop working.

Each named record gets a new callback nonce (callback_auth), so a leaked token is a 401
from then on, SRP's own callbacks for the request included; reconcile_tasks still polls
SRP for the task and lists its files, so the request still finishes.
"""

from __future__ import annotations

import argparse
from typing import Any

from srp_bundle.callbacks import revoke_callback_tokens
from srp_bundle.cli._backend import Backend


def add_parser(commands: Any, parents: list[argparse.ArgumentParser]) -> None:
    """Register `revoke-tokens`."""
    parser = commands.add_parser(
        "revoke-tokens",
        parents=parents,
        help="revoke the callback tokens of requests (a token leaked)",
        description=(
            "Replace each record's callback nonce: every token issued for the request is "
            "refused (401) from then on; reconcile still finishes the request."
        ),
    )
    parser.add_argument("request_ids", nargs="+", help="requests whose tokens to revoke")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Revoke each request's tokens; exit 1 if a request has no record."""
    store = Backend(args).store
    missing = 0
    for request_id in args.request_ids:
        if revoke_callback_tokens(store, request_id):
            print(f"{request_id}: callback tokens revoked")
        else:
            missing += 1
            print(f"{request_id}: no such record")
    return 1 if missing else 0
