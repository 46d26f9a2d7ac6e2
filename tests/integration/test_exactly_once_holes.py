"""Issue 14: each hole in exactly-once, shown by a test that fails without its fix.

The use cases run against the real Firestore and Pub/Sub emulators; SRP is the scripted
HTTP fake of `scripted_srp`, which can create a task and then answer an error
(`srp_create_then_error`, local_stack/srp_faults.py).
"""

from __future__ import annotations

import json
import uuid
from concurrent.futures import Future
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from google.api_core.exceptions import InvalidArgument, ServiceUnavailable
from google.cloud import firestore, pubsub_v1
from scripted_srp import ScriptedSrp

from local_stack.terraform_exemptions import terraform_index_exemptions
from srp_bundle.callbacks import CallbackIngestor
from srp_bundle.dead_letters import record_dead_letter
from srp_bundle.errors import SrpConnectionError, SrpRateLimitedError, SrpServerError
from srp_bundle.events import EventPublisher
from srp_bundle.outbox import publish_transition, republish_pending
from srp_bundle.postprocessing import RenderPostprocessor
from srp_bundle.reconciliation import Reconciler
from srp_bundle.settings import load_settings
from srp_bundle.submission import SubmissionDeferredError, Submitter
from srp_bundle.task_state import (
    MAX_LIST_ENTRIES,
    SrpStatusReported,
    State,
    TaskRecord,
    TaskSubmitted,
    utc_now,
)
from srp_bundle.task_store import TaskStore
from srp_bundle.trigger_events import PubsubMessage, StorageObject

TIMESTAMP = "2026-11-30T12:00:00.000Z"


def message(body: dict[str, Any] | bytes, message_id: str = "m-1") -> PubsubMessage:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return PubsubMessage(message_id=message_id, data=data)


def submitter_for(pipeline: Any, srp: ScriptedSrp, **options: Any) -> Submitter:
    settings = load_settings("submit_task", pipeline.env())
    return Submitter(settings, pipeline.store, srp.client(), pipeline.events_publisher, **options)


# ---- hole 1: a 5xx after SRP created the task ------------------------------------------


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_a_5xx_after_srp_created_the_task_is_ambiguous_and_never_posted_again(
    pipeline, render_request, status: int
) -> None:
    srp = ScriptedSrp()
    srp.post_script = [("srp_create_then_error", status)]
    submitter = submitter_for(pipeline, srp)
    request = render_request()

    with pytest.raises(SrpServerError):
        submitter.submit(message(request))
    record = pipeline.record(request["request_id"])
    assert record.ambiguous_submit_at is not None
    assert record.unconfirmed_submissions == 1

    with pytest.raises(SubmissionDeferredError):
        submitter.submit(message(request))  # the redelivery waits for SRP's callback
    assert len(srp.tasks) == 1


def test_a_429_created_nothing_and_the_redelivery_posts_at_once(pipeline, render_request) -> None:
    srp = ScriptedSrp()
    srp.post_script = ["srp_post_429"]
    submitter = submitter_for(pipeline, srp)
    request = render_request()

    with pytest.raises(SrpRateLimitedError):
        submitter.submit(message(request))
    assert pipeline.record(request["request_id"]).ambiguous_submit_at is None

    result = submitter.submit(message(request))

    assert result.record is not None and result.record.task_id in srp.tasks
    assert len(srp.tasks) == 1 and result.record.unconfirmed_submissions == 0


# ---- hole 2: the POST succeeded, then the Firestore write failed ------------------------


class StoreFailingOnce(TaskStore):
    """The real store, except that recording SRP's answer fails once (before it commits)."""

    def __init__(self, store: TaskStore) -> None:
        super().__init__(store.client, store.collection_name)
        self.failures = 1

    def apply(self, request_id: str, change: Any, **options: Any) -> Any:
        if isinstance(change, TaskSubmitted) and self.failures:
            self.failures -= 1
            raise ServiceUnavailable("simulated: the commit after the POST failed")
        return super().apply(request_id, change, **options)


def expire_lease(pipeline: Any, request_id: str) -> None:
    """As if the lease's time had run out (the invocation died with it)."""
    document = pipeline.store.records.document(request_id)
    assert document.get().exists
    document.update({"lease_expires_at": utc_now() - timedelta(seconds=1)})


def test_a_post_whose_answer_could_not_be_recorded_counts_as_ambiguous(
    pipeline, render_request
) -> None:
    srp = ScriptedSrp()
    settings = load_settings("submit_task", pipeline.env())
    store = StoreFailingOnce(pipeline.store)
    submitter = Submitter(settings, store, srp.client(), pipeline.events_publisher)
    request = render_request()

    with pytest.raises(ServiceUnavailable):
        submitter.submit(message(request))
    assert len(srp.tasks) == 1
    record = pipeline.record(request["request_id"])
    assert record.task_id is None
    assert record.ambiguous_submit_at is not None and record.unconfirmed_submissions == 1

    expire_lease(pipeline, request["request_id"])
    with pytest.raises(SubmissionDeferredError):
        submitter.submit(message(request))  # waits for SRP's callback instead of posting
    assert len(srp.tasks) == 1

    # SRP's callback (here: the same change a callback makes) attaches the task: settled.
    (task_id,) = srp.tasks
    pipeline.apply(request["request_id"], SrpStatusReported(task_id, "in_progress"))
    record = pipeline.record(request["request_id"])
    assert record.task_id == task_id and record.unconfirmed_submissions == 0


def test_a_submitted_request_has_nothing_unconfirmed(pipeline, render_request) -> None:
    srp = ScriptedSrp()
    request = render_request()

    result = submitter_for(pipeline, srp).submit(message(request))

    assert result.record is not None and result.record.task_id in srp.tasks
    assert result.record.unconfirmed_submissions == 0
    assert result.record.ambiguous_submit_at is None


def test_a_post_srp_refused_settles_its_intent(pipeline, render_request) -> None:
    srp = ScriptedSrp()
    srp.post_script = [422]
    request = render_request()

    result = submitter_for(pipeline, srp).submit(message(request))

    assert result.record is not None and result.record.state == State.FAILED
    assert result.record.unconfirmed_submissions == 0 and srp.tasks == {}


# ---- hole 9: a callback naming another request's task -----------------------------------


def ingestor_for(pipeline: Any, srp: ScriptedSrp, **env: str) -> CallbackIngestor:
    settings = load_settings("ingest_webhook", pipeline.env(**env))
    client = srp.client()
    return CallbackIngestor(settings, pipeline.store, lambda: client, pipeline.events_publisher)


def call_back(ingestor: CallbackIngestor, request_id: str, status: str, task_id: str) -> Any:
    body: dict[str, Any] = {"status": status, "task_id": task_id, "timestamp": TIMESTAMP}
    if status == "done":
        body["output_files"] = [f"render/sample/{task_id}/render.png"]
    record = ingestor.store.get(request_id)
    assert record is not None and record.callback_nonce is not None
    token = ingestor.signer.token(request_id, record.callback_nonce)
    return ingestor.ingest("POST", request_id, token, json.dumps(body).encode())


def two_requests(pipeline: Any, render_request: Any, srp: ScriptedSrp) -> tuple[str, str, str, str]:
    """Request A whose POST answer was lost (task A exists at SRP), request B submitted."""
    submitter = submitter_for(pipeline, srp)
    a, b = render_request(), render_request()
    srp.post_script = ["srp_create_then_hang"]
    with pytest.raises(SrpConnectionError):
        submitter.submit(message(a))
    (task_a,) = srp.tasks
    result = submitter.submit(message(b))
    assert result.record is not None and result.record.task_id is not None
    return a["request_id"], task_a, b["request_id"], result.record.task_id


def test_a_callback_naming_another_requests_task_never_attaches_it(
    pipeline, render_request
) -> None:
    srp = ScriptedSrp()
    request_a, task_a, _, task_b = two_requests(pipeline, render_request, srp)
    ingestor = ingestor_for(pipeline, srp)
    before = pipeline.record(request_a).to_document()

    reply = call_back(ingestor, request_a, "in_progress", task_b)

    assert reply.status_code == 200 and reply.body["changed"] is False
    assert "not posted for request" in reply.body["ignored"]
    after = pipeline.record(request_a).to_document()
    assert after == before and after["task_id"] is None
    # The request's own task, named by its callback, is attached.
    assert call_back(ingestor, request_a, "in_progress", task_a).body["changed"] is True
    assert pipeline.record(request_a).task_id == task_a


def test_a_done_naming_another_requests_task_passes_no_confirmation(
    pipeline, render_request
) -> None:
    srp = ScriptedSrp()
    request_a, task_a, _, task_b = two_requests(pipeline, render_request, srp)
    ingestor = ingestor_for(pipeline, srp)
    call_back(ingestor, request_a, "in_progress", task_a)
    srp.get_status[task_b] = "done"  # SRP really finished B's task
    before = pipeline.record(request_a).to_document()

    reply = call_back(ingestor, request_a, "done", task_b)

    assert reply.status_code == 200 and reply.body["changed"] is False
    after = pipeline.record(request_a).to_document()
    assert after == before
    assert after["state"] == "rendering" and after["duplicate_task_ids"] == []


def test_confirmation_checks_the_collection_srp_returns(pipeline, render_request) -> None:
    srp = ScriptedSrp()
    _, _, request_b, task_b = two_requests(pipeline, render_request, srp)
    srp.tasks[task_b]["collection_id"] = "00000000-0000-4000-8000-000000000000"
    srp.get_status[task_b] = "done"

    reply = call_back(ingestor_for(pipeline, srp), request_b, "done", task_b)

    assert reply.body["changed"] is False and "renders collection" in reply.body["ignored"]
    assert pipeline.record(request_b).state == State.SUBMITTED


# ---- hole 3: every lease runs from the time it is taken --------------------------------


class StepClock:
    """A clock that moves only when told to."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


def stuck_record(pipeline: Any, request: dict[str, Any], **fields: Any) -> None:
    """A record as a submit_task instance that died after creating it leaves it."""
    pipeline.store.create(
        TaskRecord(
            request_id=request["request_id"],
            collection_id=request["collection_id"],
            input_data_json=json.dumps(request["input_data"]),
            **fields,
        )
    )


def test_the_store_stamps_every_write_with_its_clock(pipeline, render_request) -> None:
    clock = StepClock(datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC))
    store = TaskStore(pipeline.firestore, pipeline.tasks_collection, clock=clock)
    request = render_request()
    stuck_record(pipeline, request)

    transition = store.apply(request["request_id"], TaskSubmitted(str(uuid.uuid4()), "new"))

    record = pipeline.record(request["request_id"])
    assert record.updated_at == clock.now == transition.record.updated_at
    assert [e["at"] for e in store.event_log(request["request_id"]) if e["at"] >= clock.now]
    (event,) = store.pending_events(clock.now + timedelta(seconds=1), 10, request["request_id"])
    assert event["data"]["time"] == clock.now.isoformat()


def test_a_long_reconcile_run_never_hands_out_a_lease_that_already_expired(
    pipeline, render_request
) -> None:
    clock = StepClock(utc_now() + timedelta(hours=1))  # every record is stale by then
    srp = ScriptedSrp()
    requests = [render_request() for _ in range(3)]
    for request in requests:
        stuck_record(pipeline, request)
    ids = {request["request_id"] for request in requests}
    expired_leases: list[str] = []

    def slow_post() -> None:
        # At the moment of each POST, the lease of the record being posted must be live.
        for request_id in ids:
            record = pipeline.record(request_id)
            if record.lease_owner is not None and record.task_id is None:
                assert record.lease_expires_at is not None
                if record.lease_expires_at <= clock():
                    expired_leases.append(request_id)
        clock.now += timedelta(seconds=100)  # each POST takes longer than a lease

    srp.before_post = slow_post
    settings = load_settings("reconcile_tasks", pipeline.env())
    client = srp.client()
    # The state machine takes the lease at the store's time: one clock for all of them.
    store = TaskStore(pipeline.firestore, pipeline.tasks_collection, clock=clock)
    submitter = Submitter(settings, store, client, pipeline.events_publisher, clock=clock)
    reconciler = Reconciler(settings, submitter, clock=clock)

    counts = reconciler.run()

    assert counts["resubmitted"] >= len(requests)
    assert expired_leases == []
    assert all(pipeline.record(request_id).task_id in srp.tasks for request_id in ids)


# ---- holes 4 and 5: dead letters ------------------------------------------------------


DEAD_LETTER_ATTRIBUTES = {"CloudPubSubDeadLetterSourceDeliveryCount": "5"}


class StoreAttachingFirst(TaskStore):
    """The real store; SRP's callback attaches the task just before the next change commits."""

    def __init__(self, store: TaskStore, task_id: str) -> None:
        super().__init__(store.client, store.collection_name)
        self.task_id: str | None = task_id

    def apply(self, request_id: str, change: Any, **options: Any) -> Any:
        if self.task_id is not None:
            task_id, self.task_id = self.task_id, None
            super().apply(request_id, SrpStatusReported(task_id, "in_progress"))
        return super().apply(request_id, change, **options)


def test_a_dead_letter_never_fails_a_task_attached_before_its_commit(
    pipeline, render_request
) -> None:
    srp = ScriptedSrp()
    srp.post_script = [("srp_create_then_error", 503)]
    request = render_request()
    with pytest.raises(SrpServerError):
        submitter_for(pipeline, srp).submit(message(request))
    (task_id,) = srp.tasks  # SRP created it; its callback is on the way
    store = StoreAttachingFirst(pipeline.store, task_id)

    record = record_dead_letter(
        store,
        pipeline.events_publisher,
        PubsubMessage("dl-1", json.dumps(request).encode(), DEAD_LETTER_ATTRIBUTES),
    )

    assert record is not None and record.task_id == task_id
    assert pipeline.record(request["request_id"]).state == State.RENDERING


def test_a_dead_letter_without_request_id_fails_the_original_record_and_creates_none(
    pipeline, render_request
) -> None:
    srp = ScriptedSrp()
    srp.post_script = [("srp_create_then_error", 503)]
    body = render_request()
    body["input_data"]["nonce"] = body.pop("request_id")  # a body no other test sends
    data = json.dumps(body).encode()
    original = f"orig-{pipeline.tasks_collection}"
    with pytest.raises(SrpServerError):
        submitter_for(pipeline, srp).submit(message(data, message_id=original))

    # Pub/Sub forwards the message to the dead-letter topic under a new message id.
    forwarded = f"dl-{pipeline.tasks_collection}"
    record = record_dead_letter(
        pipeline.store,
        pipeline.events_publisher,
        PubsubMessage(forwarded, data, DEAD_LETTER_ATTRIBUTES),
    )

    assert record is not None and record.request_id == original
    failed = pipeline.record(original)
    assert failed.state == State.FAILED and failed.error["code"] == "dead_lettered"
    assert "5 delivery attempts" in failed.error["message"]
    assert pipeline.store.get(forwarded) is None


def test_a_dead_letter_of_a_message_never_recorded_creates_one_failed_record(
    pipeline, render_request
) -> None:
    body = render_request()
    body["input_data"]["nonce"] = body.pop("request_id")
    forwarded = f"dl-new-{pipeline.tasks_collection}"
    data = json.dumps(body).encode()

    for _ in range(2):  # a redelivered dead letter changes nothing more
        record_dead_letter(
            pipeline.store,
            pipeline.events_publisher,
            PubsubMessage(forwarded, data, DEAD_LETTER_ATTRIBUTES),
        )

    record = pipeline.record(forwarded)
    assert record.state == State.FAILED and record.error["code"] == "dead_lettered"
    assert pipeline.events.wait_for(forwarded, "task.failed") == ["task.failed"]


# ---- hole 6: what can never be sent is refused once -----------------------------------


@pytest.mark.parametrize(
    ("replaced", "literal", "reason"),
    [
        ('"RareFlare3.png"', "NaN", "NaN"),
        ('"RareFlare3.png"', "-Infinity", "Infinity"),
        ('{"token_id": 1}', '{"note": "\\ud800"}', "not Unicode"),  # kept as a map
    ],
    ids=["nan", "infinity", "lone-surrogate-in-metadata"],
)
def test_input_that_can_never_be_sent_is_failed_once_and_acknowledged(
    pipeline, render_request, replaced: str, literal: str, reason: str
) -> None:
    srp = ScriptedSrp()
    request = render_request(metadata={"token_id": 1})
    data = json.dumps(request).replace(replaced, literal, 1).encode()
    assert literal.encode() in data

    result = submitter_for(pipeline, srp).submit(message(data))  # returns: acknowledged

    assert result.record is not None and result.record.state == State.FAILED
    assert result.record.error["code"] == "invalid_message"
    assert reason in result.record.error["message"]
    assert srp.raw_posts == []
    assert pipeline.events.wait_for(request["request_id"], "task.failed") == ["task.failed"]


def test_reconcile_fails_a_record_that_can_never_be_sent_and_goes_on(
    pipeline, render_request
) -> None:
    clock = StepClock(utc_now() + timedelta(hours=1))
    srp = ScriptedSrp()
    bad, good = render_request(), render_request()
    stuck_record(pipeline, bad, callback_urls=[12345])  # stored before validation existed
    stuck_record(pipeline, good)
    settings = load_settings("reconcile_tasks", pipeline.env())
    client = srp.client()
    submitter = Submitter(settings, pipeline.store, client, pipeline.events_publisher, clock=clock)
    reconciler = Reconciler(settings, submitter, clock=clock)

    reconciler.run()

    failed = pipeline.record(bad["request_id"])
    assert failed.state == State.FAILED and "can never be sent" in failed.error["message"]
    assert pipeline.record(good["request_id"]).task_id in srp.tasks


# ---- hole 7: any JSON object SRP accepts, byte for byte --------------------------------


def nested(depth: int) -> str:
    return '{"d":' * depth + "1" + "}" * depth


@pytest.mark.parametrize(
    "input_text",
    [
        '{"grid": [[1, 2], [3, [4]]]}',
        '{"__meta__": {"__x__": 1}, "": "empty key"}',
        '{"deep": ' + nested(25) + "}",
        '{ "spaced" :\t1e5 , "exact": 1.10, "big": 123456789012345678901234567890 }',
        '{"text": "caf\\u00e9 \u00e9 \\ud83d\\ude00", "dup": 1, "dup": 2}',
    ],
    ids=["arrays-in-arrays", "reserved-names", "map-depth-25", "number-text", "escapes"],
)
def test_any_json_object_is_submitted_byte_for_byte_and_kept_as_text(
    pipeline, render_request, input_text: str
) -> None:
    srp = ScriptedSrp()
    request = render_request()
    data = json.dumps(request).replace(json.dumps(request["input_data"]), input_text).encode()
    assert input_text.encode() in data

    result = submitter_for(pipeline, srp).submit(message(data))

    assert result.outcome == "submitted"
    (posted,) = srp.raw_posts
    assert b'"input_data":' + input_text.encode() + b"," in posted
    record = pipeline.record(request["request_id"])
    assert record.input_data_json == input_text
    assert record.input_data == json.loads(input_text)
    stored = pipeline.firestore.collection(pipeline.tasks_collection).document(
        request["request_id"]
    )
    assert isinstance(stored.get().to_dict()["input_data_json"], str)


@pytest.mark.parametrize(
    ("metadata", "reason"),
    [
        ({"grid": [[1]]}, "array inside an array"),
        ({"__meta__": 1}, "field name Firestore refuses"),
        (json.loads(nested(25)), "deeper than 20"),
    ],
    ids=["arrays-in-arrays", "reserved-name", "too-deep"],
)
def test_metadata_firestore_cannot_store_is_refused_once_with_the_reason(
    pipeline, render_request, metadata: dict[str, Any], reason: str
) -> None:
    srp = ScriptedSrp()
    request = render_request(metadata=metadata)

    result = submitter_for(pipeline, srp).submit(message(request))

    assert result.record is not None and result.record.state == State.FAILED
    assert reason in result.record.error["message"] and srp.raw_posts == []


# ---- hole 11: one poison event never blocks the outbox --------------------------------


class PublisherWithProductionLimits(pubsub_v1.PublisherClient):
    """The real client; like production Pub/Sub, it refuses attribute values over 1,024 bytes."""

    def publish(self, topic: str, data: bytes, **attributes: Any) -> Any:
        if any(len(value.encode()) > 1024 for value in attributes.values()):
            refused: Future[str] = Future()
            refused.set_exception(InvalidArgument("attribute value longer than 1024 bytes"))
            return refused
        return super().publish(topic, data, **attributes)


def in_outbox(pipeline: Any, request_id: str, events: list[dict[str, Any]]) -> None:
    """As a committed change leaves its events."""

    @firestore.transactional
    def write(transaction: firestore.Transaction) -> None:
        pipeline.store._write_outbox(transaction, request_id, events)

    write(pipeline.firestore.transaction())


def test_an_event_pubsub_refuses_is_parked_and_the_others_go_out(pipeline, render_request) -> None:
    request_id = render_request()["request_id"]
    data = {"request_id": request_id, "state": "rendering"}
    # An event id as the old code built it from a long status: over Pub/Sub's 1,024-byte
    # attribute limit, within what Firestore indexes (1,500 bytes).
    poison = {"event_id": "x" * 1400, "type": "task.status_changed", "data": data}
    good = {"event_id": f"{request_id}-good", "type": "task.status_changed", "data": data}
    in_outbox(pipeline, request_id, [poison, good])
    publisher = EventPublisher(
        PublisherWithProductionLimits(), pipeline.project_id, pipeline.events_topic
    )

    publish_transition(pipeline.store, publisher, request_id, [poison, good])  # no raise

    pipeline.events.wait_for(request_id, "task.status_changed")
    pipeline.events.settle(0.3)
    assert [e["event_id"] for e in pipeline.events.by_request[request_id]] == [good["event_id"]]
    assert pipeline.unpublished_events(request_id) == []  # the outbox is clear
    parked = [s.to_dict() for s in pipeline.store.parked.stream()]
    (mine,) = [entry for entry in parked if entry["request_id"] == request_id]
    assert mine["event"]["event_id"] == poison["event_id"]
    assert "1024 bytes" in mine["reason"]


def test_reconcile_republishes_past_a_poison_event(pipeline, render_request) -> None:
    request_id = render_request()["request_id"]
    data = {"request_id": request_id, "state": "rendering"}
    poison = {"event_id": "y" * 1400, "type": "task.status_changed", "data": data}
    good = {"event_id": f"{request_id}-good", "type": "task.status_changed", "data": data}
    in_outbox(pipeline, request_id, [poison, good])  # the invocation died after its commit
    publisher = EventPublisher(
        PublisherWithProductionLimits(), pipeline.project_id, pipeline.events_topic
    )

    republish_pending(pipeline.store, publisher, utc_now() + timedelta(seconds=1))

    pipeline.events.wait_for(request_id, "task.status_changed")
    assert pipeline.unpublished_events(request_id) == []


# ---- hole 10: bounded records ---------------------------------------------------------


def test_the_event_log_is_capped_and_the_record_keeps_working(pipeline, render_request) -> None:
    srp = ScriptedSrp()
    request = render_request()
    result = submitter_for(pipeline, srp).submit(message(request))
    assert result.record is not None and result.record.task_id is not None
    task_id = result.record.task_id
    ingestor = ingestor_for(pipeline, srp, CONFIRM_TERMINAL_STATUS="false")
    token = pipeline.callback_token(request["request_id"])

    for number in range(MAX_LIST_ENTRIES + 10):  # distinct bodies: each is a new log entry
        body = {"status": "in_progress", "task_id": task_id, "timestamp": TIMESTAMP, "n": number}
        reply = ingestor.ingest("POST", request["request_id"], token, json.dumps(body).encode())
        assert reply.status_code == 200

    record = pipeline.record(request["request_id"])
    assert record.event_log_entries == MAX_LIST_ENTRIES
    assert record.event_log_dropped > 0
    assert len(pipeline.store.event_log(request["request_id"])) == MAX_LIST_ENTRIES
    # Later news still moves the record: only the log stopped growing.
    assert call_back(ingestor, request["request_id"], "done", task_id).body["changed"] is True
    assert pipeline.record(request["request_id"]).state == State.RENDERED


# ---- hole 8: a render path the pattern lets through but the code refuses ----------------


@pytest.mark.parametrize("collection_name", ["..", "."])
def test_a_render_path_the_code_refuses_is_a_recorded_rejection(
    pipeline, render_request, collection_name: str
) -> None:
    srp = ScriptedSrp()
    request = render_request()
    result = submitter_for(pipeline, srp).submit(message(request))
    assert result.record is not None and result.record.task_id is not None
    task_id = result.record.task_id
    settings = load_settings("postprocess_render", pipeline.env())
    postprocessor = RenderPostprocessor(
        settings, pipeline.store, pipeline.storage, pipeline.events_publisher
    )
    path = f"render/{collection_name}/{task_id}/render.png"
    render = StorageObject(pipeline.renders_bucket, path, 1700000000)

    outcome = postprocessor.process(render)  # returns: acknowledged, never retried

    assert outcome.outcome == "rejected"
    stored = pipeline.store.render_result(task_id, path)
    assert stored is not None and stored.error["code"] == "render_path_rejected"
    record = pipeline.record(request["request_id"])
    assert record.state == State.FAILED and record.error["code"] == "render_path_rejected"
    assert collection_name in record.error["message"]


def test_a_60_kib_input_data_is_stored_under_terraforms_index_exemption(
    pipeline, render_request, firestore_emulator
) -> None:
    # The local Firestore refuses indexed strings over 1,500 bytes; Terraform's exemption
    # for input_data_json is what lets a large input be kept (production would truncate
    # its index entry instead).
    exemptions = terraform_index_exemptions({"tasks_collection": pipeline.tasks_collection})
    assert {"collection": pipeline.tasks_collection, "field": "input_data_json"} in exemptions
    firestore_emulator.control.set_index_exemptions(exemptions)
    try:
        srp = ScriptedSrp()
        request = render_request()
        input_text = '{"scene": "' + "x" * 60_000 + '"}'
        data = json.dumps(request).replace(json.dumps(request["input_data"]), input_text)

        result = submitter_for(pipeline, srp).submit(message(data.encode()))

        assert result.outcome == "submitted"
        assert pipeline.record(request["request_id"]).input_data_json == input_text
        assert input_text.encode() in srp.raw_posts[0]
    finally:
        firestore_emulator.control.set_index_exemptions(firestore_emulator.index_exemptions)


def test_a_callback_with_long_text_is_logged_under_terraforms_index_exemption(
    pipeline, render_request, firestore_emulator
) -> None:
    exemptions = terraform_index_exemptions({"tasks_collection": pipeline.tasks_collection})
    assert {"collection": "events", "field": "payload"} in exemptions
    firestore_emulator.control.set_index_exemptions(exemptions)
    try:
        srp = ScriptedSrp()
        request = render_request()
        result = submitter_for(pipeline, srp).submit(message(request))
        assert result.record is not None and result.record.task_id is not None
        body = {
            "status": "in_progress",
            "task_id": result.record.task_id,
            "timestamp": TIMESTAMP,
            "log": "frame rendered; " * 500,  # 8,000 characters SRP may add
        }
        token = pipeline.callback_token(request["request_id"])

        reply = ingestor_for(pipeline, srp).ingest(
            "POST", request["request_id"], token, json.dumps(body).encode()
        )

        assert reply.status_code == 200 and reply.body["changed"] is True
        logged = [e for e in pipeline.store.event_log(request["request_id"]) if "payload" in e]
        assert logged[0]["payload"] == body
    finally:
        firestore_emulator.control.set_index_exemptions(firestore_emulator.index_exemptions)
