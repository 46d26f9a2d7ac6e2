"""What every command needs: configuration from flags or environment, checked connections.

Each connection is probed once with a short timeout and no retries, so an unreachable
emulator or project fails in seconds with a clear message instead of a long retry loop.
"""

from __future__ import annotations

import argparse
import functools
import os
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

from google.api_core import exceptions as api_exceptions

from srp_bundle.errors import ConfigurationError
from srp_bundle.settings import Settings, load_settings
from srp_bundle.task_state import State, TaskRecord
from srp_bundle.task_store import TaskStore
from srp_bundle.wiring import Services

RENDER_REQUESTS_TOPIC = "RENDER_REQUESTS_TOPIC"
PROBE_TIMEOUT_SECONDS = 5.0
# Flag -> the environment variable it overrides (the flag wins).
FLAG_VARIABLES = {
    "project": "GOOGLE_CLOUD_PROJECT",
    "tasks_collection": "TASKS_COLLECTION",
    "requests_topic": RENDER_REQUESTS_TOPIC,
    "events_topic": "EVENTS_TOPIC",
    "renders_bucket": "RENDERS_BUCKET",
    "derivatives_bucket": "DERIVATIVES_BUCKET",
}
_T = TypeVar("_T")


class CliError(Exception):
    """An error the CLI reports in one line, with the exit code scripts rely on."""

    exit_code = 2


class UsageError(CliError):
    """Wrong flags, missing configuration or a bad input file (exit 2)."""


class BackendUnavailableError(CliError):
    """An emulator or the project cannot be reached (exit 3)."""

    exit_code = 3


def add_connection_flags(parser: argparse.ArgumentParser) -> None:
    """The flags that point a command at the local stack or a project."""
    group = parser.add_argument_group("where (flags override environment variables)")
    group.add_argument("--project", help="project id [GOOGLE_CLOUD_PROJECT]")
    group.add_argument("--tasks-collection", help="task records collection [TASKS_COLLECTION]")
    group.add_argument(
        "--requests-topic", help=f"render-requests topic id [{RENDER_REQUESTS_TOPIC}]"
    )
    group.add_argument("--events-topic", help="outgoing events topic id [EVENTS_TOPIC]")
    group.add_argument("--renders-bucket", help="bucket SRP writes renders to [RENDERS_BUCKET]")
    group.add_argument("--derivatives-bucket", help="derivatives bucket [DERIVATIVES_BUCKET]")


def with_flag_hint(message: str) -> str:
    """Add the flag that can replace each environment variable the message names."""
    for flag, variable in FLAG_VARIABLES.items():
        if variable in message.split():
            message += f" (set {variable} or pass --{flag.replace('_', '-')})"
    return message


class Backend:
    """Settings and lazily opened, probed clients for one CLI invocation."""

    def __init__(self, args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> None:
        env = dict(os.environ if environ is None else environ)
        for flag, variable in FLAG_VARIABLES.items():
            value = getattr(args, flag, None)
            if value:
                env[variable] = value
        self.env = env
        try:
            self.settings: Settings = load_settings(environ=env)
        except ConfigurationError as error:
            raise UsageError(with_flag_hint(str(error))) from None
        # The same wiring as the functions: clients, store and clock come from it.
        self.services = Services(self.settings)

    def require(self, variable: str) -> str:
        """A configuration value the command cannot work without."""
        value = self.env.get(variable, "").strip()
        if not value:
            raise UsageError(with_flag_hint(f"{variable} is not set"))
        return value

    # ---- Firestore ----------------------------------------------------------------------

    @functools.cached_property
    def store(self) -> TaskStore:
        """Task records, after checking that Firestore answers."""
        store = guarded("Firestore", lambda: self.services.store)
        guarded(
            self._where("Firestore", "FIRESTORE_EMULATOR_HOST"),
            lambda: store.records.limit(1).get(retry=None, timeout=PROBE_TIMEOUT_SECONDS),
        )
        return store

    # ---- Cloud Storage ------------------------------------------------------------------

    @functools.cached_property
    def storage(self) -> Any:
        """The Cloud Storage client."""
        return guarded("Cloud Storage", lambda: self.services.storage)

    def bucket(self, variable: str) -> Any:
        """The bucket named by `variable`, after checking that it exists."""
        name = self.require(variable)
        where = self._where("Cloud Storage", "STORAGE_EMULATOR_HOST")
        try:
            return guarded(
                where,
                lambda: self.storage.get_bucket(name, timeout=PROBE_TIMEOUT_SECONDS, retry=None),
            )
        except BackendUnavailableError as error:
            if isinstance(error.__cause__, api_exceptions.NotFound):
                raise UsageError(f"bucket {name!r} ({variable}) does not exist") from None
            raise

    # ---- Pub/Sub ------------------------------------------------------------------------

    @functools.cached_property
    def publisher(self) -> Any:
        """The Pub/Sub publisher client."""
        from google.cloud.pubsub_v1 import PublisherClient

        return guarded("Pub/Sub", PublisherClient)

    def topic_path(self, variable: str) -> str:
        """The full path of the topic named by `variable`, after checking that it exists."""
        topic_id = self.require(variable)
        path: str = self.publisher.topic_path(self.settings.project_id, topic_id)
        where = self._where("Pub/Sub", "PUBSUB_EMULATOR_HOST")
        try:
            guarded(
                where,
                lambda: self.publisher.get_topic(
                    request={"topic": path}, retry=None, timeout=PROBE_TIMEOUT_SECONDS
                ),
            )
        except BackendUnavailableError as error:
            if isinstance(error.__cause__, api_exceptions.NotFound):
                raise UsageError(f"topic {path} ({variable}) does not exist") from None
            raise
        return path

    def _where(self, service: str, emulator_variable: str) -> str:
        host = self.env.get(emulator_variable)
        if host:
            return f"the {service} emulator at {host} ({emulator_variable})"
        return f"{service} in project {self.settings.project_id}"


def guarded(where: str, call: Callable[[], _T]) -> _T:
    """Run a backend call, turning connection and permission failures into one clear error."""
    import google.auth.exceptions
    import requests

    try:
        return call()
    except google.auth.exceptions.DefaultCredentialsError:
        raise UsageError(
            f"no Google credentials for {where}: run `gcloud auth application-default login`, "
            "or point the *_EMULATOR_HOST variables at the local stack"
        ) from None
    except (
        api_exceptions.GoogleAPICallError,
        api_exceptions.RetryError,
        google.auth.exceptions.GoogleAuthError,
        requests.exceptions.RequestException,
    ) as error:
        detail = str(error).splitlines()[0][:200] if str(error) else type(error).__name__
        raise BackendUnavailableError(f"cannot reach {where}: {detail}") from error


# ---- selecting records ----------------------------------------------------------------


PAGE_SIZE = 500


def member_pages(
    store: TaskStore,
    *,
    collection_id: str | None,
    batch: str | None,
    state: State,
    page_size: int = PAGE_SIZE,
    limit: int | None = None,
) -> Iterator[list[TaskRecord]]:
    """The records of a batch (else a collection) in `state`, a page at a time, by request id.

    Each page is one indexed query, `batch_id == X and state == S and request_id > cursor`
    ordered by request id (Terraform's `tasks_by_batch_and_state`; `collection_id` uses
    `tasks_by_collection_and_state`): memory holds one page, whatever the batch's size.
    With both, the batch is queried and other collections' members are left out.
    """
    from google.cloud.firestore_v1.base_query import FieldFilter

    if batch:
        field, value = "batch_id", batch
    elif collection_id:
        field, value = "collection_id", collection_id
    else:
        raise UsageError("name the records: pass --collection-id and/or --batch")
    cursor: str | None = None
    left = limit
    while left is None or left > 0:
        size = page_size if left is None else min(page_size, left)
        query: Any = store.records.where(filter=FieldFilter(field, "==", value)).where(
            filter=FieldFilter("state", "==", str(state))
        )
        if cursor is not None:
            query = query.where(filter=FieldFilter("request_id", ">", cursor))
        snapshots = list(query.order_by("request_id").limit(size).stream())
        page = [TaskRecord.from_document(s.to_dict()) for s in snapshots]
        if not page:
            return
        cursor = page[-1].request_id
        if left is not None:
            left -= len(page)
        kept = [r for r in page if not collection_id or r.collection_id == collection_id]
        if kept:
            yield kept
        if len(page) < size:
            return


def count_by_state(store: TaskStore, collection_id: str) -> dict[str, int]:
    """Records of a collection per state: one count aggregation each (equality filters only,
    served by single-field indexes; one read per 1,000 records counted)."""
    from google.cloud.firestore_v1.base_query import FieldFilter

    counts = {}
    for state in State:
        query: Any = store.records.where(
            filter=FieldFilter("collection_id", "==", collection_id)
        ).where(filter=FieldFilter("state", "==", str(state)))
        counts[str(state)] = int(query.count(alias="n").get()[0][0].value)
    return counts


def existing_request_ids(store: TaskStore, request_ids: list[str], chunk: int = 300) -> set[str]:
    """Which of these request ids already have a record (batched reads)."""
    found: set[str] = set()
    for start in range(0, len(request_ids), chunk):
        references = [store.records.document(r) for r in request_ids[start : start + chunk]]
        for snapshot in store.client.get_all(references, field_paths=["request_id"]):
            if snapshot.exists:
                found.add(snapshot.id)
    return found
