"""Billing counters inside a function process, loaded through PYTHONPATH by the e2e bench.

Active only when BENCH_COUNTS_DIR is set. Counts what Google bills, at the client
libraries' lowest Python layer: Firestore document reads (each document a get or query
returns, a missing document included, at least one per query) and writes (each write in a
commit), Pub/Sub messages published, Cloud Storage requests by operation class (deletes,
which are free, apart) and HTTP invocations. Each process keeps its totals in
BENCH_COUNTS_DIR/<pid>.json.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import Any

_DIRECTORY = os.environ.get("BENCH_COUNTS_DIR")
_counts: Counter[str] = Counter()
_lock = threading.Lock()


def _function_name() -> str:
    argv = sys.argv
    return argv[argv.index("--target") + 1] if "--target" in argv[:-1] else "?"


def _add(name: str, amount: int = 1) -> None:
    assert _DIRECTORY is not None
    with _lock:
        _counts[name] += amount
        path = os.path.join(_DIRECTORY, f"{os.getpid()}.json")
        with open(path + ".tmp", "w") as handle:
            json.dump({"function": _function_name(), "counts": dict(_counts)}, handle)
        os.replace(path + ".tmp", path)


def _field(request: Any, name: str) -> Any:
    if request is None:
        return None
    return request.get(name) if isinstance(request, dict) else getattr(request, name, None)


def _counting_stream(
    method: Callable[..., Iterable[Any]], counter: Callable[[Any], int], at_least: int
) -> Callable[..., Iterator[Any]]:
    def wrapper(*args: Any, **kwargs: Any) -> Iterator[Any]:
        counted = 0
        try:
            for response in method(*args, **kwargs):
                counted += counter(response)
                yield response
        finally:
            _add("firestore_reads", max(counted, at_least))

    return wrapper


def _install() -> None:
    import flask
    import requests
    from google.cloud.firestore_v1.services.firestore.client import FirestoreClient
    from google.cloud.pubsub_v1 import PublisherClient

    commit = FirestoreClient.commit

    def counted_commit(self: Any, *args: Any, **kwargs: Any) -> Any:
        request = kwargs.get("request", args[0] if args else None)
        _add("firestore_writes", len(_field(request, "writes") or []))
        return commit(self, *args, **kwargs)

    FirestoreClient.commit = counted_commit  # type: ignore[method-assign]
    FirestoreClient.batch_get_documents = _counting_stream(  # type: ignore[method-assign]
        FirestoreClient.batch_get_documents,
        lambda response: 1 if (response.found or response.missing) else 0,
        at_least=0,
    )
    FirestoreClient.run_query = _counting_stream(  # type: ignore[method-assign]
        FirestoreClient.run_query, lambda response: 1 if response.document else 0, at_least=1
    )
    publish = PublisherClient.publish

    def counted_publish(self: Any, *args: Any, **kwargs: Any) -> Any:
        _add("pubsub_publishes")
        return publish(self, *args, **kwargs)

    PublisherClient.publish = counted_publish  # type: ignore[method-assign]
    wsgi_app = flask.Flask.wsgi_app

    def counted_wsgi_app(self: Any, environ: Any, start_response: Any) -> Any:
        _add("invocations")
        return wsgi_app(self, environ, start_response)

    flask.Flask.wsgi_app = counted_wsgi_app  # type: ignore[method-assign]
    storage_host = os.environ.get("STORAGE_EMULATOR_HOST", "storage.googleapis.com")
    session_request = requests.Session.request

    def counted_request(self: Any, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        if storage_host.split("://")[-1] in url:
            # Listing and every mutation are class A; reading an object or metadata class B.
            listing = method == "GET" and url.split("?")[0].rstrip("/").endswith("/o")
            if method == "DELETE":
                _add("gcs_deletes")  # free
            elif listing or method in ("POST", "PUT", "PATCH"):
                _add("gcs_class_a")
            else:
                _add("gcs_class_b")
        return session_request(self, method, url, *args, **kwargs)

    requests.Session.request = counted_request  # type: ignore[method-assign]


if _DIRECTORY:
    _install()
