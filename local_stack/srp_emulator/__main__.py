"""Run the SRP emulator: `python -m local_stack.srp_emulator --port P --api-key KEY ...`."""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import signal
import sys
import tempfile
import threading
from pathlib import Path
from types import FrameType

from local_stack.srp_emulator.assets import DEFAULT_URL_TTL_SECONDS, AssetStore
from local_stack.srp_emulator.callbacks import DeliveryPolicy
from local_stack.srp_emulator.catalog import (
    SAMPLE_COLLECTIONS_FILE,
    CollectionConfigError,
    load_collections,
)
from local_stack.srp_emulator.engine import Engine, EngineSettings
from local_stack.srp_emulator.faults import FaultConfig, FaultConfigError, FaultInjector
from local_stack.srp_emulator.renderer import DEFAULT_RENDER_SIZE
from local_stack.srp_emulator.server import EmulatorServer
from local_stack.srp_emulator.storage import GcsRenderStore


def build_parser() -> argparse.ArgumentParser:
    """The command line, documented in docs/srp-emulator.md."""
    parser = argparse.ArgumentParser(
        prog="python -m local_stack.srp_emulator", description="Local emulator of the SRP task API"
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument(
        "--api-key", action="append", required=True, help="accepted Bearer key (repeatable)"
    )
    parser.add_argument("--renders-bucket", required=True, help="bucket the renders go to")
    parser.add_argument("--collections", type=Path, default=SAMPLE_COLLECTIONS_FILE)
    parser.add_argument("--render-size", type=int, default=DEFAULT_RENDER_SIZE)
    parser.add_argument("--parallel", type=int, default=2, help="renders at the same time")
    parser.add_argument("--queue-seconds", type=float, default=0.5, help="least time as `new`")
    parser.add_argument("--render-seconds", type=float, default=1.0, help="time `in_progress`")
    parser.add_argument("--callback-attempts", type=int, default=4)
    parser.add_argument("--callback-backoff", type=float, default=0.5, help="first retry delay")
    parser.add_argument("--callback-timeout", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=None, help="fault RNG seed")
    parser.add_argument("--faults", help="fault settings as a JSON object or a JSON file path")
    parser.add_argument(
        "--fault", action="append", default=[], metavar="NAME=VALUE", help="one fault setting"
    )
    parser.add_argument("--control-token", help="require this token on /_emulator/ routes")
    parser.add_argument(
        "--assets-dir", type=Path, help="where uploaded asset archives go (default: temporary)"
    )
    parser.add_argument(
        "--upload-url-ttl",
        type=float,
        default=DEFAULT_URL_TTL_SECONDS,
        help="seconds an asset upload URL stays valid",
    )
    parser.add_argument("--no-create-bucket", action="store_true")
    parser.add_argument("--verbose", action="store_true")
    return parser


def _fault_config(args: argparse.Namespace) -> FaultConfig:
    values: dict[str, object] = {}
    if args.faults:
        text = args.faults.strip()
        source = text if text.startswith("{") else Path(text).read_text(encoding="utf-8")
        values = json.loads(source)
    config = FaultConfig.from_dict(values).with_overrides(args.fault)
    if args.seed is not None:
        config.seed = args.seed
    return config


def main(argv: list[str] | None = None) -> int:
    """Start the emulator and serve until SIGTERM or SIGINT."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.parallel < 1 or args.render_size < 8:
        parser.error("--parallel must be >= 1 and --render-size >= 8")
    try:
        faults = _fault_config(args)
        collections = load_collections(args.collections)
    except (FaultConfigError, CollectionConfigError, OSError, ValueError) as error:
        parser.error(str(error))
    store = GcsRenderStore(args.renders_bucket, create_bucket=not args.no_create_bucket)
    settings = EngineSettings(
        render_size=args.render_size,
        parallel=args.parallel,
        queue_seconds=args.queue_seconds,
        render_seconds=args.render_seconds,
        delivery=DeliveryPolicy(
            attempts=args.callback_attempts,
            backoff_seconds=args.callback_backoff,
            timeout_seconds=args.callback_timeout,
        ),
    )
    temporary_assets = None if args.assets_dir else tempfile.mkdtemp(prefix="srp-emulator-assets-")
    assets = AssetStore(
        args.assets_dir or Path(str(temporary_assets)), url_ttl_seconds=args.upload_url_ttl
    )
    engine = Engine(settings, collections, store, FaultInjector(faults), assets)
    server = EmulatorServer(
        (args.host, args.port),
        engine,
        api_keys=args.api_key,
        initial_faults=faults,
        control_token=args.control_token,
    )
    stop_requested = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop_requested.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    engine.start()
    serving = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1})
    serving.start()
    print(f"srp emulator listening on {server.url}", flush=True)
    while not stop_requested.wait(0.5):
        pass  # a timed wait keeps the main thread responsive to signals
    engine.stop()
    server.shutdown()
    server.server_close()
    serving.join(timeout=5)
    if temporary_assets:
        shutil.rmtree(temporary_assets, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
