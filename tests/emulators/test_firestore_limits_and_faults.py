"""Production's data limits, set() semantics and the seeded commit faults of our local Firestore,
seen through the real google-cloud-firestore client."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import pytest
from google.api_core import exceptions
from google.cloud import firestore
from google.cloud.firestore_v1.services.firestore import FirestoreClient
from google.cloud.firestore_v1.services.firestore.transports import FirestoreGrpcTransport
from google.cloud.firestore_v1.types import document, write
from google.cloud.firestore_v1.types import firestore as firestore_types

from local_stack.emulators import FirestoreControl, FirestoreEmulator

pytestmark = pytest.mark.integration

PROJECT_ID = "limits-test"
EXEMPT_COLLECTION = "exempt"
MAX_DOCUMENT_BYTES = 1_048_576


@pytest.fixture(scope="module")
def emulator() -> Iterator[FirestoreEmulator]:
    """The layered emulator with one exemption, as Terraform would declare it."""
    exemptions = [{"collection": EXEMPT_COLLECTION, "field": "payload"}]
    with FirestoreEmulator(index_exemptions=exemptions) as running:
        yield running


@pytest.fixture
def control(emulator: FirestoreEmulator) -> Iterator[FirestoreControl]:
    """The control API, with faults reset after each test."""
    yield emulator.control
    emulator.control.reset()


@pytest.fixture
def client(emulator: FirestoreEmulator) -> firestore.Client:
    """A google-cloud-firestore client on the emulator (the autouse fixture restores env)."""
    os.environ.update(emulator.env)
    return firestore.Client(project=PROJECT_ID)


@pytest.fixture
def collection(client: firestore.Client) -> firestore.CollectionReference:
    """A collection no other test touches (its id is never exempt)."""
    return client.collection(f"limits-{uuid.uuid4().hex[:10]}")


@pytest.fixture
def gapic(emulator: FirestoreEmulator) -> Iterator[FirestoreClient]:
    """The raw API, to see an RPC's status without the client library's retries."""
    channel = grpc.insecure_channel(emulator.host)
    yield FirestoreClient(transport=FirestoreGrpcTransport(channel=channel))
    channel.close()


def _refused(reference: firestore.DocumentReference, data: dict[str, Any]) -> str:
    """Set `data`, expecting INVALID_ARGUMENT; returns the message."""
    with pytest.raises(exceptions.InvalidArgument) as refusal:
        reference.set(data)
    return str(refusal.value.message)


def _nested_maps(levels: int) -> dict[str, Any]:
    """A top-level field whose value nests `levels` maps (depth `levels`)."""
    value: Any = "leaf"
    for _ in range(levels):
        value = {"m": value}
    return {"deep": value}


# set() ----------------------------------------------------------------------------------------


def test_set_without_merge_replaces_the_whole_document(
    collection: firestore.CollectionReference,
) -> None:
    record = collection.document("record")
    record.set({"state": "submitted", "lease_owner": "delivery-1", "nested": {"a": 1, "b": 2}})

    record.set({"state": "completed", "nested": {"a": 3}})

    assert record.get().to_dict() == {"state": "completed", "nested": {"a": 3}}


def test_set_with_merge_and_update_keep_other_fields(
    collection: firestore.CollectionReference,
) -> None:
    record = collection.document("record")
    record.set({"state": "submitted", "nested": {"a": 1, "b": 2}})

    record.set({"nested": {"a": 3}}, merge=True)
    record.update({"state": "rendering"})

    assert record.get().to_dict() == {"state": "rendering", "nested": {"a": 3, "b": 2}}


def test_set_in_a_transaction_replaces_the_document_too(
    client: firestore.Client, collection: firestore.CollectionReference
) -> None:
    record = collection.document("record")
    record.set({"old": True, "state": "received"})

    @firestore.transactional
    def replace(transaction: firestore.Transaction) -> None:
        record.get(transaction=transaction)
        transaction.set(record, {"state": "submitted"})

    replace(client.transaction())

    assert record.get().to_dict() == {"state": "submitted"}


# Data limits ----------------------------------------------------------------------------------


def test_an_array_directly_inside_an_array_is_refused_and_nothing_is_written(
    collection: firestore.CollectionReference,
) -> None:
    record = collection.document("record")
    record.set({"input_data": {"layers": ["a"]}})

    message = _refused(record, {"input_data": {"layers": [["a", "b"], ["c"]]}})

    assert message == "Cannot convert an array value in an array value."
    assert record.get().to_dict() == {"input_data": {"layers": ["a"]}}


def test_an_array_inside_a_map_inside_an_array_is_accepted(
    collection: firestore.CollectionReference,
) -> None:
    record = collection.document("record")

    record.set({"layers": [{"points": [1, 2]}, {"points": [3]}]})

    assert record.get().get("layers") == [{"points": [1, 2]}, {"points": [3]}]


@pytest.mark.parametrize(
    "data",
    [{"__meta__": 1}, {"input_data": {"__meta__": {"x": 1}}}, {"list": [{"__id__": 1}]}],
    ids=["top-level", "in-a-map", "in-a-map-in-an-array"],
)
def test_a_field_name_matching_double_underscores_is_refused(
    collection: firestore.CollectionReference, data: dict[str, Any]
) -> None:
    record = collection.document("record")

    message = _refused(record, data)

    assert "reserved" in message and "__.*__" in message
    assert not record.get().exists


def test_names_with_underscores_on_one_side_only_are_accepted(
    collection: firestore.CollectionReference,
) -> None:
    record = collection.document("record")

    record.set({"__leading": 1, "trailing__": 2, "_": 3, "a__b": 4})

    assert record.get().to_dict() == {"__leading": 1, "trailing__": 2, "_": 3, "a__b": 4}


def test_maps_nest_20_deep_and_no_deeper(collection: firestore.CollectionReference) -> None:
    record = collection.document("record")

    record.set(_nested_maps(20))
    message = _refused(record, _nested_maps(21))

    assert "maximum depth is 20" in message
    assert record.get().to_dict() == _nested_maps(20)


def test_arrays_count_towards_the_depth_like_maps(
    collection: firestore.CollectionReference,
) -> None:
    # Firestore's own example: {nested_map: {nested_array: [{foo}]}} is 3 levels deep.
    value: Any = "leaf"
    for level in range(21):
        value = [value] if level % 2 else {"m": value}

    assert "maximum depth is 20" in _refused(collection.document("record"), {"deep": value})


def test_a_document_of_exactly_one_mib_is_stored_and_one_byte_more_is_refused(
    client: firestore.Client,
) -> None:
    # Firestore's storage sizes: name "exempt/a" = (6+1) + (1+1) + 16 = 25 bytes, field name
    # "payload" = 7 + 1, a string = its UTF-8 bytes + 1, plus 32 for the document.
    record = client.collection(EXEMPT_COLLECTION).document("a")
    fits = MAX_DOCUMENT_BYTES - 25 - 8 - 1 - 32

    record.set({"payload": "x" * fits})
    message = _refused(record, {"payload": "x" * (fits + 1)})

    assert message == (
        f"Document 'projects/{PROJECT_ID}/databases/(default)/documents/{EXEMPT_COLLECTION}/a' "
        "cannot be written because its size (1,048,577 bytes) exceeds the maximum allowed "
        "size of 1,048,576 bytes."
    )
    assert len(record.get().get("payload")) == fits


def test_multibyte_characters_count_by_their_utf8_size(
    client: firestore.Client,
) -> None:
    record = client.collection(EXEMPT_COLLECTION).document("b")
    # "é" is 2 bytes in UTF-8: half as many characters reach the same size.
    fits = (MAX_DOCUMENT_BYTES - 25 - 8 - 1 - 32) // 2

    record.set({"payload": "é" * fits})

    assert "exceeds the maximum allowed size" in _refused(record, {"payload": "é" * (fits + 1)})


def test_an_indexed_string_of_1500_bytes_is_stored_and_1501_is_refused(
    collection: firestore.CollectionReference,
) -> None:
    record = collection.document("record")

    record.set({"status": "s" * 1500})
    message = _refused(record, {"status": "s" * 1501})

    assert 'field "status"' in message and "1501 bytes" in message
    assert "index_config" in message  # says how to fix it
    assert len(record.get().get("status")) == 1500


@pytest.mark.parametrize(
    "data",
    [
        {"log": {"body": "b" * 1501}},
        {"tags": ["ok", "t" * 1501]},
        {"blob": b"\x00" * 1501},
    ],
    ids=["in-a-map", "in-an-array", "bytes"],
)
def test_long_values_inside_maps_arrays_and_bytes_are_indexed_too(
    collection: firestore.CollectionReference, data: dict[str, Any]
) -> None:
    assert "longer than the 1500 bytes" in _refused(collection.document("record"), data)


def test_an_exempt_field_and_everything_under_it_may_be_long(
    client: firestore.Client,
) -> None:
    # The exemption names a collection id: it applies to every collection with that id.
    parent = client.collection(f"limits-{uuid.uuid4().hex[:10]}").document("parent")
    record = parent.collection(EXEMPT_COLLECTION).document("record")

    record.set({"payload": {"json": "j" * 5000, "list": ["l" * 2000]}})

    assert len(record.get().get("payload")["json"]) == 5000
    assert "longer than" in _refused(record, {"payload": "ok", "other": "o" * 1501})


def test_exemptions_can_be_replaced_at_runtime(
    control: FirestoreControl, collection: firestore.CollectionReference
) -> None:
    before = control.index_exemptions()
    record = collection.document("record")
    try:
        control.set_index_exemptions([{"collection": collection.id, "field": "input_json"}])
        record.set({"input_json": "i" * 3000})
    finally:
        control.set_index_exemptions(before)

    assert "longer than" in _refused(record, {"input_json": "i" * 3000})
    assert len(record.get().get("input_json")) == 3000


def test_a_refused_write_in_a_batch_applies_none_of_the_batch(
    client: firestore.Client, collection: firestore.CollectionReference
) -> None:
    first, second = collection.document("first"), collection.document("second")
    first.set({"value": "before"})

    batch = client.batch()
    batch.set(first, {"value": "after"})
    batch.set(second, {"bad": [[1]]})
    with pytest.raises(exceptions.InvalidArgument):
        batch.commit()

    assert first.get().to_dict() == {"value": "before"}
    assert not second.get().exists


def test_an_update_that_would_leave_a_refused_document_changes_nothing(
    collection: firestore.CollectionReference,
) -> None:
    record = collection.document("record")
    record.set({"state": "submitted", "log": []})

    with pytest.raises(exceptions.InvalidArgument):
        record.update({"log": firestore.ArrayUnion(["x" * 2000])})

    assert record.get().to_dict() == {"state": "submitted", "log": []}


# Commit faults --------------------------------------------------------------------------------


def _raw_set(gapic: FirestoreClient, reference: firestore.DocumentReference, value: str) -> None:
    """One Commit RPC, with no retry: the status the emulator answered is what is raised."""
    request = firestore_types.CommitRequest(
        database=reference._client._database_string,
        writes=[
            write.Write(
                update=document.Document(
                    name=reference._document_path, fields={"value": {"string_value": value}}
                )
            )
        ],
    )
    gapic.commit(request=request, retry=None)


def test_a_failed_commit_answers_unavailable_and_applies_nothing(
    control: FirestoreControl, gapic: FirestoreClient, collection: firestore.CollectionReference
) -> None:
    record = collection.document("record")
    control.set_faults(fail_commits=[2])

    _raw_set(gapic, record, "first")
    with pytest.raises(exceptions.ServiceUnavailable):
        _raw_set(gapic, record, "second")
    assert record.get().get("value") == "first"
    _raw_set(gapic, record, "third")

    assert record.get().get("value") == "third"
    assert control.stats()["commits"] == 3
    assert [(i["commit"], i["fault"], i["code"]) for i in control.stats()["injected"]] == [
        (2, "fail_commit", "UNAVAILABLE")
    ]


def test_the_client_library_retries_a_failed_commit_and_its_transaction_still_commits(
    client: firestore.Client, control: FirestoreControl, collection: firestore.CollectionReference
) -> None:
    counter = collection.document("counter")
    counter.set({"count": 0})
    control.set_faults(fail_commits=[1, 2])  # the gapic retry sends the Commit again

    @firestore.transactional
    def increment(transaction: firestore.Transaction) -> None:
        current = counter.get(transaction=transaction).get("count")
        transaction.update(counter, {"count": current + 1})

    increment(client.transaction())

    assert counter.get().get("count") == 1
    assert control.stats()["commits"] == 3


def test_a_dropped_answer_is_deadline_exceeded_although_the_commit_was_applied(
    control: FirestoreControl, collection: firestore.CollectionReference
) -> None:
    record = collection.document("record")
    control.set_faults(drop_answer_commits=[1])

    with pytest.raises(exceptions.DeadlineExceeded):
        record.set({"value": "applied"})

    assert record.get().to_dict() == {"value": "applied"}


def test_a_create_whose_answer_was_lost_is_already_there_when_retried(
    control: FirestoreControl, collection: firestore.CollectionReference
) -> None:
    # With UNAVAILABLE the client library resends the Commit: the create it already applied
    # then fails as a duplicate, exactly the confusion production can cause.
    record = collection.document("record")
    control.set_faults(drop_answer_commits=[1], drop_answer_code="UNAVAILABLE")

    with pytest.raises(exceptions.AlreadyExists):
        record.create({"value": "once"})

    assert record.get().to_dict() == {"value": "once"}
    assert control.stats()["commits"] == 2


def test_a_transaction_whose_answer_was_lost_fails_although_it_committed(
    client: firestore.Client, control: FirestoreControl, collection: firestore.CollectionReference
) -> None:
    counter = collection.document("counter")
    counter.set({"count": 0})
    control.set_faults(drop_answer_commits=[1], drop_answer_code="UNAVAILABLE")

    @firestore.transactional
    def increment(transaction: firestore.Transaction) -> None:
        current = counter.get(transaction=transaction).get("count")
        transaction.update(counter, {"count": current + 1})

    # The resent Commit names a transaction that has ended: INVALID_ARGUMENT, as Firestore
    # answers for an expired transaction. The caller cannot tell it was applied.
    with pytest.raises(exceptions.InvalidArgument):
        increment(client.transaction())

    assert counter.get().get("count") == 1


def test_faults_can_be_limited_to_paths_and_are_reproducible_from_the_seed(
    control: FirestoreControl, collection: firestore.CollectionReference
) -> None:
    def run() -> list[int]:
        control.set_faults(
            seed=7,
            fail_commit_rate=0.3,
            drop_answer_rate=0.3,
            path_pattern=f"^{collection.id}/watched-",
        )
        for index in range(20):
            collection.document(f"other-{index}").set({"n": index})  # never counted
            with contextlib.suppress(exceptions.ServiceUnavailable, exceptions.DeadlineExceeded):
                collection.document(f"watched-{index}").set({"n": index}, retry=None)
        stats = control.stats()
        assert stats["commits"] == 20
        return [entry["commit"] for entry in stats["injected"]]

    first, second = run(), run()

    assert first == second
    assert 0 < len(first) < 20


def test_unknown_or_invalid_fault_settings_are_refused(control: FirestoreControl) -> None:
    with pytest.raises(ValueError, match="unknown fault setting 'fail_rate'"):
        control.set_faults(fail_rate=0.5)
    with pytest.raises(ValueError, match="between 0 and 1"):
        control.set_faults(drop_answer_rate=2)
    with pytest.raises(ValueError, match="drop_answer_code"):
        control.set_faults(drop_answer_code="ABORTED")
    assert control.faults()["fail_commits"] == []


# Read barrier (forced interleavings) ----------------------------------------------------------


def _read_in_a_transaction(client: firestore.Client, reference: firestore.DocumentReference) -> Any:
    @firestore.transactional
    def read(transaction: firestore.Transaction) -> Any:
        return reference.get(transaction=transaction).get("count")

    return read(client.transaction())


def test_a_read_barrier_holds_transactional_reads_until_all_parties_arrived(
    client: firestore.Client, control: FirestoreControl, collection: firestore.CollectionReference
) -> None:
    counter = collection.document("counter")
    counter.set({"count": 1})
    control.arm_read_barrier(2, f"^{collection.id}/counter$", timeout_seconds=60)

    counter.get()  # not in a transaction: never held
    assert control.read_barrier()["armed"] == {"parties": 2, "waiting": 0}
    with ThreadPoolExecutor(2) as pool:
        seen = list(pool.map(lambda _: _read_in_a_transaction(client, counter), range(2)))

    assert seen == [1, 1]
    state = control.read_barrier()
    assert state["armed"] is None
    assert state["history"][-1] == {"outcome": "filled", "readers": 2}


def test_a_barrier_that_is_never_filled_lets_its_reader_go_and_says_so(
    client: firestore.Client, control: FirestoreControl, collection: firestore.CollectionReference
) -> None:
    counter = collection.document("counter")
    counter.set({"count": 1})
    control.arm_read_barrier(2, f"^{collection.id}/counter$", timeout_seconds=0.2)

    assert _read_in_a_transaction(client, counter) == 1

    assert control.read_barrier()["history"][-1] == {"outcome": "timed_out", "readers": 1}
