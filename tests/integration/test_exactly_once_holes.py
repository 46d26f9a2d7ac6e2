"""Issue 14: each hole in exactly-once, shown by a test that fails without its fix.

The use cases run against the real Firestore and Pub/Sub emulators; SRP is the scripted
HTTP fake of `scripted_srp`, which can create a task and then answer an error.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from scripted_srp import ScriptedSrp

from srp_bundle.cloudevents import PubsubMessage
from srp_bundle.errors import SrpRateLimitedError, SrpServerError
from srp_bundle.settings import load_settings
from srp_bundle.submission import SubmissionDeferredError, Submitter


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
    srp.post_script = [status]
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
    srp.post_script = [429]
    submitter = submitter_for(pipeline, srp)
    request = render_request()

    with pytest.raises(SrpRateLimitedError):
        submitter.submit(message(request))
    assert pipeline.record(request["request_id"]).ambiguous_submit_at is None

    result = submitter.submit(message(request))

    assert result.record is not None and result.record.task_id in srp.tasks
    assert len(srp.tasks) == 1 and result.record.unconfirmed_submissions == 0
