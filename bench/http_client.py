"""POST throughput of httpx.Client vs requests.Session against one local keep-alive server.

Usage: .venv/bin/python bench/http_client.py [--requests 3000] [--rounds 5]

The server runs in its own process (so it does not share the clients' GIL) and answers every
request with a fixed 201 JSON body over HTTP/1.1 keep-alive, so the numbers measure the
client libraries, not the server. Both clients send the same body and headers as
`SrpClient.submit_task`, one request at a time on one reused connection, and run in
alternating rounds in the same process so machine noise affects both alike.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import statistics
import time
from collections.abc import Callable
from importlib.metadata import version
from multiprocessing.connection import Connection

import httpx
import requests

BODY = json.dumps(
    {
        "collection_id": "3f0e5b5c-8d44-4a6a-9a53-0c1f8f2f4b11",
        "input_data": {"bg": "RareFlare3.png", "pants": "stepper", "shoe_color": "#ff0000"},
        "render_options": {
            "callback_urls": [
                {
                    "url": "https://hooks.example/cb/req-1",
                    "method": "post",
                    "headers": {"X-Callback-Token": "t" * 64},
                }
            ],
            "priority": 50,
        },
    },
    separators=(",", ":"),
).encode()
HEADERS = {"Authorization": "Bearer bench-key", "Content-Type": "application/json"}
REPLY_BODY = json.dumps({"id": "9b2d7c3e-1a4f-4e8b-b6d5-2f7a1c9e0d44", "status": "new"}).encode()
REPLY = (
    b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\n"
    b"Content-Length: " + str(len(REPLY_BODY)).encode() + b"\r\n\r\n" + REPLY_BODY
)


class _KeepAliveHttp(asyncio.Protocol):
    """Just enough HTTP/1.1: read headers and a Content-Length body, answer, keep the connection."""

    def __init__(self) -> None:
        self.buffer = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            head_end = self.buffer.find(b"\r\n\r\n")
            if head_end < 0:
                return
            length = 0
            for line in self.buffer[:head_end].split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            request_end = head_end + 4 + length
            if len(self.buffer) < request_end:
                return
            self.buffer = self.buffer[request_end:]
            self.transport.write(REPLY)


def _serve(ready: Connection) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(_KeepAliveHttp, "127.0.0.1", 0)
        ready.send(server.sockets[0].getsockname()[1])
        await server.serve_forever()

    asyncio.run(main())


def _rate(post: Callable[[], int], count: int) -> float:
    started = time.perf_counter()
    for _ in range(count):
        if post() != 201:
            raise RuntimeError("unexpected status")
    return count / (time.perf_counter() - started)


def main() -> None:
    """Run the benchmark and print req/s per library and their ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000, help="requests per round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per library")
    args = parser.parse_args()

    receive, send = multiprocessing.Pipe(duplex=False)
    server = multiprocessing.Process(target=_serve, args=(send,), daemon=True)
    server.start()
    try:
        url = f"http://127.0.0.1:{receive.recv()}/api/v1/tasks"
        with httpx.Client(headers=HEADERS, timeout=10.0) as hx, requests.Session() as rq:
            rq.headers.update(HEADERS)
            clients: dict[str, Callable[[], int]] = {
                f"httpx {httpx.__version__} Client": lambda: hx.post(url, content=BODY).status_code,
                f"requests {version('requests')} Session": lambda: (
                    rq.post(url, data=BODY, timeout=10.0).status_code
                ),
            }
            for post in clients.values():  # warm-up: connection, imports, caches
                _rate(post, 200)
            rates: dict[str, list[float]] = {name: [] for name in clients}
            for _ in range(args.rounds):
                for name, post in clients.items():
                    rates[name].append(_rate(post, args.requests))
    finally:
        server.terminate()
        server.join()

    print(f"POST {len(BODY)} B body, {args.requests} requests x {args.rounds} rounds, keep-alive")
    medians = {}
    for name, values in rates.items():
        medians[name] = statistics.median(values)
        spread = f"min {min(values):,.0f}, max {max(values):,.0f}"
        print(f"  {name:<28} median {medians[name]:>8,.0f} req/s  ({spread})")
    httpx_rate, requests_rate = medians.values()
    print(f"  ratio httpx / requests: {httpx_rate / requests_rate:.2f}")


if __name__ == "__main__":
    main()
