"""Child processes that never outlive us: start on a free port, wait until ready, always stop."""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import re
import signal
import socket
import subprocess
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

REPO_ROOT = Path(__file__).resolve().parent.parent

_PR_SET_PDEATHSIG = 1
_running: set[ManagedProcess] = set()


class ProcessStartError(RuntimeError):
    """A child process exited or stayed silent instead of becoming ready."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def port_is_open(host: str, port: int) -> bool:
    """Whether something accepts TCP connections on host:port."""
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


def listening_pids(port: int) -> set[int]:
    """Processes that hold a listening TCP socket on `port` (from /proc; Linux only)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(FileNotFoundError), open(table) as rows:
            for row in list(rows)[1:]:
                fields = row.split()
                local_port = int(fields[1].rsplit(":", 1)[1], 16)
                if local_port == port and fields[3] == "0A":  # 0A = LISTEN
                    inodes.add(fields[9])
    owners = set()
    for fd_dir in Path("/proc").glob("[0-9]*/fd"):
        with contextlib.suppress(OSError):
            for fd in fd_dir.iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:[") and target[8:-1] in inodes:
                    owners.add(int(fd_dir.parent.name))
    return owners


def _load_libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        return None


# Loaded once here: the child must not dlopen between fork and exec (a lock another thread
# of ours held at fork time would deadlock it).
_LIBC = _load_libc()


def _die_with_parent() -> None:
    # Runs in the child before exec: the kernel sends SIGTERM to the child if we die
    # (even by SIGKILL), so an interrupted test run leaves no orphan behind.
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class ManagedProcess:
    """A child process whose stdout announces readiness with a line matching `ready_pattern`."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        ready_pattern: str,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        start_timeout: float = 60.0,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.ready_pattern = re.compile(ready_pattern)
        self.env = {**os.environ, **(env or {})}
        self.cwd = cwd or REPO_ROOT
        self.start_timeout = start_timeout
        self.ready_match: re.Match[str] | None = None
        self.output: deque[str] = deque(maxlen=200)
        self._process: subprocess.Popen[str] | None = None
        self._ready = threading.Event()

    @property
    def pid(self) -> int | None:
        """The child's process id while it runs."""
        return self._process.pid if self._process else None

    def start(self) -> ManagedProcess:
        """Start the child and block until it prints its ready line."""
        self._process = subprocess.Popen(
            self.argv,
            cwd=self.cwd,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
            preexec_fn=_die_with_parent,
            start_new_session=True,
        )
        _running.add(self)
        threading.Thread(target=self._pump_output, name=f"{self.name}-output", daemon=True).start()
        deadline = time.monotonic() + self.start_timeout
        while not self._ready.wait(0.05):
            if self._process.poll() is not None or time.monotonic() > deadline:
                reason = (
                    f"exited with code {self._process.returncode}"
                    if self._process.poll() is not None
                    else f"was not ready after {self.start_timeout:.0f}s"
                )
                self.stop()
                tail = "\n".join(list(self.output)[-20:])
                raise ProcessStartError(f"{self.name} {reason}; its last output:\n{tail}")
        return self

    def _pump_output(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        for line in self._process.stdout:
            line = line.rstrip("\n")
            self.output.append(line)
            if not self._ready.is_set():
                match = self.ready_pattern.search(line)
                if match:
                    self.ready_match = match
                    self._ready.set()
            if os.environ.get("LOCAL_STACK_VERBOSE"):
                print(f"[{self.name}] {line}", flush=True)

    def is_running(self) -> bool:
        """Whether the child is still alive."""
        return self._process is not None and self._process.poll() is None

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM the child's whole process group, SIGKILL it if it lingers."""
        process = self._process
        _running.discard(self)
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout)

    def __enter__(self) -> ManagedProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


@atexit.register
def _stop_all() -> None:
    for process in list(_running):
        process.stop()
