"""Firestore semantics of our local emulator (local_stack/firestore), with the real Python client.

Each guarantee is shown twice: with the transactional layer (it holds) and, in a
`test_control_*` test, on the plain upstream emulator (it breaks), which proves the
test can see the problem the layer fixes. Controls force their interleaving step by step,
so they never depend on a race happening.
"""

from __future__ import annotations

import os
import select
import subprocess
import threading
import uuid
from collections.abc import Callable, Iterator

import grpc
import pytest
from google.api_core import exceptions
from google.cloud import firestore
from google.cloud.firestore_v1.services.firestore import FirestoreClient
from google.cloud.firestore_v1.services.firestore.transports import FirestoreGrpcTransport
from google.cloud.firestore_v1.types import document, write
from google.cloud.firestore_v1.types import firestore as firestore_types

from local_stack.processes import REPO_ROOT, free_port

pytestmark = pytest.mark.integration

SERVER_SCRIPT = REPO_ROOT / "local_stack" / "firestore" / "server.js"
READY_PREFIX = "firestore emulator listening on "
PROJECT_ID = "semantics-test"
THREADS = 4
INCREMENTS_PER_THREAD = 50


def _run_firestore(semantics: bool) -> Iterator[str]:
    """Start server.js on a free port, yield its host:port, stop it."""
    port = free_port()
    env = {**os.environ, "FIRESTORE_SEMANTICS": "on" if semantics else "off"}
    process = subprocess.Popen(
        ["node", str(SERVER_SCRIPT), str(port)],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        ready, _, _ = select.select([process.stdout], [], [], 20)
        line = process.stdout.readline() if ready and process.stdout else ""
        if not line.startswith(READY_PREFIX):
            raise RuntimeError(f"firestore emulator did not start (said {line!r})")
        yield line.removeprefix(READY_PREFIX).strip()
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="module")
def layered_host() -> Iterator[str]:
    """The emulator as the local stack runs it: with our transaction semantics."""
    yield from _run_firestore(semantics=True)


@pytest.fixture(scope="module")
def plain_host() -> Iterator[str]:
    """The upstream emulator alone (FIRESTORE_SEMANTICS=off): the control."""
    yield from _run_firestore(semantics=False)


def _client_for(host: str) -> firestore.Client:
    # The variable is read when the client is built; the autouse fixture restores os.environ.
    os.environ["FIRESTORE_EMULATOR_HOST"] = host
    return firestore.Client(project=PROJECT_ID)


@pytest.fixture
def client(layered_host: str) -> firestore.Client:
    """A google-cloud-firestore client on the layered emulator."""
    return _client_for(layered_host)


@pytest.fixture
def plain_client(plain_host: str) -> firestore.Client:
    """A google-cloud-firestore client on the plain upstream emulator."""
    return _client_for(plain_host)


@pytest.fixture
def plain_gapic(plain_host: str) -> Iterator[FirestoreClient]:
    """The raw Firestore API on the plain emulator."""
    channel = grpc.insecure_channel(plain_host)
    yield FirestoreClient(transport=FirestoreGrpcTransport(channel=channel))
    channel.close()


@pytest.fixture
def collection(client: firestore.Client) -> firestore.CollectionReference:
    """A collection no other test touches."""
    return client.collection(f"semantics-{uuid.uuid4().hex[:10]}")


@pytest.fixture
def gapic(layered_host: str) -> Iterator[FirestoreClient]:
    """The raw Firestore API, to drive a transaction step by step."""
    channel = grpc.insecure_channel(layered_host)
    yield FirestoreClient(transport=FirestoreGrpcTransport(channel=channel))
    channel.close()


def _increment_concurrently(
    client: firestore.Client, pick_document: Callable[[int], firestore.DocumentReference]
) -> list[BaseException]:
    """THREADS threads each run INCREMENTS_PER_THREAD transactional increments; return errors."""
    errors: list[BaseException] = []

    def worker(thread_index: int) -> None:
        # One decorated function per thread: a `_Transactional` keeps the retry id of the call
        # in progress, so sharing one between threads mixes up their transactions.
        @firestore.transactional
        def increment(
            transaction: firestore.Transaction, target: firestore.DocumentReference
        ) -> None:
            current = target.get(transaction=transaction).get("count")
            transaction.update(target, {"count": current + 1})

        target = pick_document(thread_index)
        for _ in range(INCREMENTS_PER_THREAD):
            try:
                increment(client.transaction(), target)
            except Exception as error:  # collected: the test asserts there are none
                errors.append(error)

    threads = [threading.Thread(target=worker, args=(index,)) for index in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def test_concurrent_transactional_increments_of_one_document_lose_nothing(
    client: firestore.Client, collection: firestore.CollectionReference
) -> None:
    counter = collection.document("counter")
    counter.set({"count": 0})

    errors = _increment_concurrently(client, lambda _: counter)

    assert errors == []
    assert counter.get().get("count") == THREADS * INCREMENTS_PER_THREAD


def test_concurrent_transactional_increments_of_separate_documents(
    client: firestore.Client, collection: firestore.CollectionReference
) -> None:
    counters = [collection.document(f"counter-{index}") for index in range(THREADS)]
    for counter in counters:
        counter.set({"count": 0})

    errors = _increment_concurrently(client, lambda index: counters[index])

    assert errors == []
    assert [counter.get().get("count") for counter in counters] == [INCREMENTS_PER_THREAD] * THREADS


def test_control_plain_emulator_loses_an_interleaved_transactional_increment(
    plain_client: firestore.Client, plain_gapic: FirestoreClient
) -> None:
    # The interleaving is forced, step by step: both transactions read before either commits.
    # With the layer the second commit is ABORTED (test_commit_aborts_when_a_document_read_...).
    counter = plain_client.collection(f"control-{uuid.uuid4().hex[:10]}").document("counter")
    counter.set({"count": 0})
    path, database = counter._document_path, plain_client._database_string
    first = plain_gapic.begin_transaction(database=database).transaction
    second = plain_gapic.begin_transaction(database=database).transaction

    seen = [_read_count(plain_gapic, transaction, path) for transaction in (first, second)]
    for transaction, count in zip((first, second), seen, strict=True):
        _commit(plain_gapic, database, [_set_count(path, count + 1)], transaction)

    assert seen == [0, 0]
    # Without the layer, transactions are not isolated: two increments committed, one lost.
    assert counter.get().get("count") == 1


def test_stale_update_time_precondition_fails_and_fresh_one_succeeds(
    client: firestore.Client, collection: firestore.CollectionReference
) -> None:
    record = collection.document("record")
    record.set({"state": "received"})
    stale_update_time = record.get().update_time
    record.update({"state": "submitted"})

    with pytest.raises(exceptions.FailedPrecondition):
        record.update(
            {"state": "failed"}, option=client.write_option(last_update_time=stale_update_time)
        )
    assert record.get().get("state") == "submitted"

    fresh_update_time = record.get().update_time
    record.update(
        {"state": "rendering"}, option=client.write_option(last_update_time=fresh_update_time)
    )
    assert record.get().get("state") == "rendering"


def test_control_plain_emulator_ignores_stale_update_time(
    plain_client: firestore.Client,
) -> None:
    record = plain_client.collection(f"control-{uuid.uuid4().hex[:10]}").document("record")
    record.set({"state": "received"})
    stale_update_time = record.get().update_time
    record.update({"state": "submitted"})

    record.update(
        {"state": "failed"}, option=plain_client.write_option(last_update_time=stale_update_time)
    )

    assert record.get().get("state") == "failed"


def test_every_commit_gets_a_later_update_time(
    collection: firestore.CollectionReference,
) -> None:
    record = collection.document("record")
    update_times = [record.set({"step": step}).update_time for step in range(20)]

    assert update_times == sorted(set(update_times))


def test_failing_batch_applies_none_of_its_writes(
    client: firestore.Client, collection: firestore.CollectionReference
) -> None:
    first, existing = collection.document("a"), collection.document("b")
    first.set({"value": "before"})
    existing.set({"value": "existing"})

    batch = client.batch()
    batch.set(first, {"value": "after"})
    batch.create(existing, {"value": "duplicate"})
    with pytest.raises(exceptions.AlreadyExists):
        batch.commit()

    assert first.get().get("value") == "before"
    assert existing.get().get("value") == "existing"


def test_batch_with_a_stale_update_time_applies_nothing(
    client: firestore.Client, collection: firestore.CollectionReference
) -> None:
    record, event = collection.document("record"), collection.document("record-event")
    record.set({"state": "received"})
    stale_update_time = record.get().update_time
    record.update({"state": "submitted"})

    batch = client.batch()
    batch.create(event, {"type": "task.failed"})
    batch.update(
        record, {"state": "failed"}, option=client.write_option(last_update_time=stale_update_time)
    )
    with pytest.raises(exceptions.FailedPrecondition):
        batch.commit()

    assert not event.get().exists
    assert record.get().get("state") == "submitted"


def test_control_plain_emulator_applies_a_failing_batch_partly(
    plain_client: firestore.Client,
) -> None:
    collection = plain_client.collection(f"control-{uuid.uuid4().hex[:10]}")
    first, existing = collection.document("a"), collection.document("b")
    first.set({"value": "before"})
    existing.set({"value": "existing"})

    batch = plain_client.batch()
    batch.set(first, {"value": "after"})
    batch.create(existing, {"value": "duplicate"})
    with pytest.raises(exceptions.AlreadyExists):
        batch.commit()

    assert first.get().get("value") == "after"


def _update(path: str, value: str) -> write.Write:
    return write.Write(
        update=document.Document(name=path, fields={"value": {"string_value": value}})
    )


def _commit(
    gapic: FirestoreClient, database: str, writes: list[write.Write], transaction: bytes
) -> None:
    request = firestore_types.CommitRequest(
        database=database, writes=writes, transaction=transaction
    )
    gapic.commit(request=request)


def _set_count(path: str, count: int) -> write.Write:
    return write.Write(
        update=document.Document(name=path, fields={"count": {"integer_value": count}})
    )


def _read_count(gapic: FirestoreClient, transaction: bytes, path: str) -> int:
    database = path.split("/documents/")[0]
    request = firestore_types.BatchGetDocumentsRequest(
        database=database, documents=[path], transaction=transaction
    )
    found = [response.found for response in gapic.batch_get_documents(request=request)]
    return int(found[0].fields["count"].integer_value)


def _read_in_transaction(gapic: FirestoreClient, transaction: bytes, path: str) -> None:
    database = path.split("/documents/")[0]
    request = firestore_types.BatchGetDocumentsRequest(
        database=database, documents=[path], transaction=transaction
    )
    list(gapic.batch_get_documents(request=request))


def test_commit_aborts_when_a_document_read_in_the_transaction_changed(
    client: firestore.Client, gapic: FirestoreClient, collection: firestore.CollectionReference
) -> None:
    record = collection.document("record")
    record.set({"value": "original"})
    path = record._document_path
    database = client._database_string
    older = gapic.begin_transaction(database=database).transaction
    younger = gapic.begin_transaction(database=database).transaction
    assert older != younger

    _read_in_transaction(gapic, younger, path)
    _commit(gapic, database, [_update(path, "older")], older)

    with pytest.raises(exceptions.Aborted):
        _commit(gapic, database, [_update(path, "younger")], younger)
    assert record.get().get("value") == "older"


def test_commit_aborts_when_a_query_read_in_the_transaction_gains_a_document(
    client: firestore.Client, gapic: FirestoreClient, collection: firestore.CollectionReference
) -> None:
    collection.document("one").set({"state": "failed"})
    transaction = gapic.begin_transaction(database=client._database_string).transaction
    failed_query = collection.where(filter=firestore.FieldFilter("state", "==", "failed"))
    parent, _ = collection._parent_info()
    request = firestore_types.RunQueryRequest(
        parent=parent, structured_query=failed_query._to_protobuf(), transaction=transaction
    )
    assert len([r for r in gapic.run_query(request=request) if r.document.name]) == 1

    collection.document("two").set({"state": "failed"})  # a phantom for the query above

    summary = collection.document("summary")._document_path
    with pytest.raises(exceptions.Aborted):
        _commit(gapic, client._database_string, [_update(summary, "1 failed")], transaction)
    assert not collection.document("summary").get().exists


def test_rolled_back_transaction_cannot_commit(
    client: firestore.Client, gapic: FirestoreClient, collection: firestore.CollectionReference
) -> None:
    database = client._database_string
    transaction = gapic.begin_transaction(database=database).transaction
    gapic.rollback(database=database, transaction=transaction)

    path = collection.document("record")._document_path
    with pytest.raises(exceptions.InvalidArgument):
        _commit(gapic, database, [_update(path, "late")], transaction)
    assert not collection.document("record").get().exists


def test_read_only_transaction_reads_and_commits_nothing(
    client: firestore.Client, collection: firestore.CollectionReference
) -> None:
    record = collection.document("record")
    record.set({"value": 1})

    @firestore.transactional
    def read(transaction: firestore.Transaction) -> int:
        return int(record.get(transaction=transaction).get("value"))

    assert read(client.transaction(read_only=True)) == 1
