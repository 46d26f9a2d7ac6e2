"""The state machine alone: monotonic, terminal states final, render.completed exactly once."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from srp_bundle.task_state import (
    MAX_LIST_ENTRIES,
    DeadLettered,
    DerivativesReady,
    SrpStatusReported,
    State,
    TaskFailed,
    TaskRecord,
    TaskSubmitted,
    advance,
)

TASK = "7f6c1c52-0d36-4a7f-9d1e-1a2b3c4d5e6f"
RENDER = f"render/demo/{TASK}/render.png"
VIDEO = f"render/demo/{TASK}/render.mp4"
DERIVATIVES = DerivativesReady(
    render_path=RENDER,
    generation=1,
    derivatives=({"path": "d/512.webp", "width": 512, "height": 512, "source": RENDER},),
    file={"kind": "image", "format": "png"},
)
VIDEO_READY = DerivativesReady(
    render_path=VIDEO,
    generation=5,
    derivatives=(
        {"path": "d/v/poster-512.webp", "source": VIDEO, "role": "poster"},
        {"path": "d/v/preview-320.webp", "source": VIDEO, "role": "preview"},
    ),
    file={"kind": "video", "format": "mp4", "duration": 2.0},
)


def _record() -> TaskRecord:
    return TaskRecord(request_id="req-1", collection_id="c0ffee00-0000-4000-8000-000000000000")


def _run(changes) -> tuple[TaskRecord, list[str]]:
    record, events = _record(), []
    for change in changes:
        transition = advance(record, change)
        record = transition.record
        events += [e["type"] for e in transition.events]
    return record, events


def test_happy_path_moves_forward_and_completes_once() -> None:
    record, events = _run(
        [
            TaskSubmitted(TASK, "new"),
            SrpStatusReported(TASK, "in_progress"),
            SrpStatusReported(TASK, "done", (f"render/demo/{TASK}/render.png",)),
            DERIVATIVES,
        ]
    )
    assert record.state == State.COMPLETED
    assert record.status == "done"
    assert record.output_files == [f"render/demo/{TASK}/render.png"]
    assert events == [
        "task.submitted",
        "task.status_changed",
        "task.status_changed",
        "render.completed",
    ]


def test_derivatives_before_done_complete_on_done() -> None:
    record, events = _run(
        [TaskSubmitted(TASK), DERIVATIVES, SrpStatusReported(TASK, "done", (RENDER,))]
    )
    assert record.state == State.COMPLETED
    assert events.count("render.completed") == 1


def test_late_and_duplicate_callbacks_never_move_back() -> None:
    record, events = _run(
        [
            TaskSubmitted(TASK),
            SrpStatusReported(TASK, "done"),
            SrpStatusReported(TASK, "in_progress"),
            SrpStatusReported(TASK, "done"),
            SrpStatusReported(TASK, "new"),
        ]
    )
    assert record.state == State.RENDERED
    assert record.status == "done"
    assert events == ["task.submitted", "task.status_changed"]


def test_failed_is_final() -> None:
    record, events = _run(
        [
            TaskSubmitted(TASK),
            SrpStatusReported(TASK, "failed", reason="scene crashed"),
            SrpStatusReported(TASK, "done"),
            DERIVATIVES,
        ]
    )
    assert record.state == State.FAILED
    assert record.error == {"code": "srp_render_failed", "message": "scene crashed"}
    assert events == ["task.submitted", "task.failed"]


def test_completed_is_final_even_for_a_failure() -> None:
    record, _ = _run([TaskSubmitted(TASK), SrpStatusReported(TASK, "done", (RENDER,)), DERIVATIVES])
    transition = advance(record, TaskFailed("late", "too late"))
    assert not transition.changed
    assert transition.record.state == State.COMPLETED


def test_a_second_task_id_is_recorded_as_duplicate_without_corrupting_the_record() -> None:
    other = "00000000-1111-4222-8333-444444444444"
    record, events = _run(
        [TaskSubmitted(TASK), SrpStatusReported(other, "done"), SrpStatusReported(TASK, "new")]
    )
    assert record.task_id == TASK
    assert record.duplicate_task_ids == [other]
    assert record.state == State.SUBMITTED
    assert "render.completed" not in events


def test_a_callback_attaches_the_task_when_the_post_answer_was_lost() -> None:
    record, events = _run([SrpStatusReported(TASK, "in_progress")])
    assert record.task_id == TASK
    assert record.state == State.RENDERING
    assert events[0] == "task.submitted"


def test_a_newer_generation_replaces_derivatives_without_a_second_completion() -> None:
    record, _ = _run([TaskSubmitted(TASK), SrpStatusReported(TASK, "done", (RENDER,)), DERIVATIVES])
    newer = DerivativesReady(RENDER, 2, ({"path": "d/g2/512.webp", "source": RENDER},))
    transition = advance(record, newer)
    assert transition.record.derivatives == [{"path": "d/g2/512.webp", "source": RENDER}]
    assert transition.events == []
    assert not advance(transition.record, DERIVATIVES).changed  # older generation: ignored


def test_unknown_status_changes_nothing_but_the_log() -> None:
    transition = advance(
        advance(_record(), TaskSubmitted(TASK)).record, SrpStatusReported(TASK, "??")
    )
    assert not transition.changed
    assert transition.log[0]["kind"] == "unknown_status"


_SEQUENCE = [
    SrpStatusReported(TASK, "new"),
    SrpStatusReported(TASK, "in_progress"),
    SrpStatusReported(TASK, "done", (f"render/demo/{TASK}/render.png",)),
    DERIVATIVES,
]


@settings(max_examples=300, deadline=None)
@given(
    st.permutations(_SEQUENCE)
    .flatmap(
        lambda order: st.lists(st.sampled_from(order), max_size=6).map(lambda extra: order + extra)
    )
    .flatmap(st.permutations)
)
def test_every_ordering_with_duplicates_ends_in_the_same_record(changes) -> None:
    record, events = _run(changes)
    assert record.state == State.COMPLETED
    assert record.task_id == TASK
    assert record.output_files == [f"render/demo/{TASK}/render.png"]
    assert events.count("render.completed") == 1
    assert events.count("task.submitted") == 1
    assert "task.failed" not in events


@settings(max_examples=200, deadline=None)
@given(st.permutations([*_SEQUENCE[:2], SrpStatusReported(TASK, "failed"), DERIVATIVES]))
def test_every_ordering_with_a_failure_ends_failed_once(changes) -> None:
    record, events = _run(changes)
    assert record.state == State.FAILED
    assert events.count("task.failed") == 1
    assert "render.completed" not in events


def test_unconfirmed_submissions_are_settled_by_the_task_srp_names() -> None:
    record = _record()
    record.unconfirmed_submissions = 2  # two POSTs whose answers were lost
    other = "00000000-1111-4222-8333-444444444444"

    # The first lost POST's task calls back: it is the request's task.
    record = advance(record, SrpStatusReported(TASK, "in_progress")).record
    assert (record.task_id, record.unconfirmed_submissions) == (TASK, 1)
    # The second one's task shows up later: a recorded duplicate, nothing unconfirmed left.
    record = advance(record, SrpStatusReported(other, "done")).record
    assert (record.duplicate_task_ids, record.unconfirmed_submissions) == ([other], 0)


def test_a_task_named_by_our_post_answer_settles_that_post_only() -> None:
    record = _record()
    record.unconfirmed_submissions = 2  # an earlier lost POST, and this one's intent
    record = advance(record, TaskSubmitted(TASK, "new")).record
    assert record.unconfirmed_submissions == 1


def test_several_outputs_complete_only_when_every_one_is_handled() -> None:
    done = SrpStatusReported(TASK, "done", (RENDER, VIDEO))
    for order in ([DERIVATIVES, done, VIDEO_READY], [done, VIDEO_READY, DERIVATIVES]):
        record, events = _run([TaskSubmitted(TASK), *order[:2]])
        assert record.state == State.RENDERED
        assert "render.completed" not in events

        record, events = _run([TaskSubmitted(TASK), *order])

        assert record.state == State.COMPLETED
        assert events.count("render.completed") == 1
        assert [f["path"] for f in record.files] == [VIDEO, RENDER]  # sorted by path
        assert {(d["source"], d.get("role")) for d in record.derivatives} == {
            (RENDER, None),
            (VIDEO, "poster"),
            (VIDEO, "preview"),
        }
        assert record.render_path == RENDER


def test_render_completed_carries_every_derivative_and_file() -> None:
    record = _run([TaskSubmitted(TASK), VIDEO_READY, DERIVATIVES])[0]
    transition = advance(record, SrpStatusReported(TASK, "done", (RENDER, VIDEO)))

    (completed,) = [e for e in transition.events if e["type"] == "render.completed"]
    assert [d["path"] for d in completed["data"]["derivatives"]] == [
        "d/v/poster-512.webp",
        "d/v/preview-320.webp",
        "d/512.webp",
    ]
    assert [f["path"] for f in completed["data"]["files"]] == [VIDEO, RENDER]


def test_a_file_outside_output_files_is_recorded_but_not_awaited() -> None:
    record = _run([TaskSubmitted(TASK), SrpStatusReported(TASK, "done", (VIDEO,)), VIDEO_READY])[0]
    assert record.state == State.COMPLETED
    assert record.render_path == VIDEO

    record = advance(record, DERIVATIVES).record  # a late extra file: recorded, no new event
    assert [f["path"] for f in record.files] == [VIDEO, RENDER]  # sorted by path


def test_a_model_is_described_without_derivatives() -> None:
    model = f"render/demo/{TASK}/scene.glb"
    described = DerivativesReady(model, 3, (), {"kind": "model", "format": "glb", "meshes": 2})
    record = _run([TaskSubmitted(TASK), described, SrpStatusReported(TASK, "done", (model,))])[0]
    assert record.state == State.COMPLETED
    assert record.other_files == [
        {"kind": "model", "format": "glb", "meshes": 2, "path": model, "generation": 3}
    ]
    assert record.derivatives == []


def test_a_done_callback_after_reconcile_brings_the_file_list() -> None:
    record, events = _run(
        [
            TaskSubmitted(TASK),
            SrpStatusReported(TASK, "done", (), source="reconcile"),
            SrpStatusReported(TASK, "done", (RENDER, VIDEO)),
            DERIVATIVES,
        ]
    )
    assert record.output_files == [RENDER, VIDEO]
    assert record.state == State.RENDERED  # the video is still missing
    assert "render.completed" not in events

    record = advance(record, VIDEO_READY).record
    assert record.state == State.COMPLETED


def test_done_without_a_file_list_never_completes_on_the_first_file() -> None:
    # Fails without the fix: a poll's done (no list) completed on whichever file came first.
    record, events = _run(
        [TaskSubmitted(TASK), SrpStatusReported(TASK, "done", (), source="reconcile"), DERIVATIVES]
    )
    assert record.state == State.RENDERED
    assert "render.completed" not in events

    # The trusted list arrives later (a poll that lists the folder): it completes now.
    transition = advance(record, SrpStatusReported(TASK, "done", (RENDER,), source="reconcile"))
    assert transition.record.state == State.COMPLETED
    assert [e["type"] for e in transition.events] == ["render.completed"]


def test_a_dead_letter_fails_only_a_request_srp_has_no_task_for() -> None:
    stuck = _record()
    stuck.last_error = {"code": "srp_server", "message": "SRP answered 503"}
    failed = advance(stuck, DeadLettered("5", "projects/p/subscriptions/s")).record
    assert failed.state == State.FAILED and failed.error is not None
    assert failed.error["code"] == "dead_lettered"
    assert "5 delivery attempts" in failed.error["message"]
    assert "SRP answered 503" in failed.error["message"]

    attached = advance(_record(), TaskSubmitted(TASK, "new")).record
    transition = advance(attached, DeadLettered("5", "s"))
    assert not transition.changed and transition.record.state == State.SUBMITTED


def test_event_ids_are_fixed_length_digests_whatever_srp_says() -> None:
    record = advance(_record(), TaskSubmitted(TASK, "new")).record
    events = advance(record, SrpStatusReported(TASK, "in_progress")).events
    other = advance(record, SrpStatusReported(TASK, "running")).events
    ids = [e["event_id"] for e in events + other]
    assert all(len(event_id) == 32 for event_id in ids)
    assert len(set(ids)) == len(ids)  # different transitions, different ids
    again = advance(record, SrpStatusReported(TASK, "in_progress")).events
    assert [e["event_id"] for e in again] == [e["event_id"] for e in events]  # deterministic
    failed = advance(record, SrpStatusReported(TASK, "failed" + " " * 3000)).events
    assert failed and all(len(e["event_id"]) == 32 for e in failed)


def test_duplicate_task_ids_are_capped_and_the_rest_counted() -> None:
    record = advance(_record(), TaskSubmitted(TASK, "new")).record
    for number in range(MAX_LIST_ENTRIES + 5):
        other = f"00000000-0000-4000-8000-{number:012d}"
        record = advance(record, SrpStatusReported(other, "in_progress")).record

    assert len(record.duplicate_task_ids) == MAX_LIST_ENTRIES
    assert record.duplicate_task_ids_dropped == 5
    assert record.task_id == TASK
