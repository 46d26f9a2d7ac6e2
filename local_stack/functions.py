"""Our functions as local processes under the real functions-framework runtime."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path

from local_stack.processes import REPO_ROOT, ManagedProcess, free_port

FUNCTIONS_DIR = REPO_ROOT / "functions"
SIGNATURE_TYPES = {
    "submit_task": "cloudevent",
    "ingest_webhook": "http",
    "postprocess_render": "cloudevent",
    "reconcile_tasks": "cloudevent",
    "record_dead_letter": "cloudevent",
}


def available_functions() -> list[str]:
    """Names of the functions whose `functions/<name>/main.py` exists, in a stable order."""
    return sorted(path.parent.name for path in FUNCTIONS_DIR.glob("*/main.py"))


class FunctionProcess(ManagedProcess):
    """`functions-framework --target <name> --source functions/<name>/main.py` on a free port.

    `source` and `signature_type` run any other function module (tests use small ones).
    """

    def __init__(
        self,
        name: str,
        env: Mapping[str, str],
        *,
        port: int | None = None,
        threads: int = 8,
        source: Path | None = None,
        signature_type: str | None = None,
    ) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        super().__init__(
            name,
            [
                sys.executable,
                "-m",
                "functions_framework",
                "--target",
                name,
                "--source",
                str(source or FUNCTIONS_DIR / name / "main.py"),
                "--signature-type",
                signature_type or SIGNATURE_TYPES[name],
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
            ],
            # Gunicorn announces the socket after the module imported (settings validated).
            ready_pattern=r"Listening at: http://",
            env={
                **env,
                "THREADS": str(threads),
                "GUNICORN_LOG_LEVEL": "info",
                "PYTHONUNBUFFERED": "1",
            },
        )
