"""The operator CLI, driven in-process through `main([...])` against the local stack.

The CLI publishes to a render-requests topic of its own on the Pub/Sub emulator; the tests
pull that subscription and deliver each message to `submit_task` as Eventarc would. Our
functions run with a tasks collection of this module alone, so counts are exact.
"""

from __future__ import annotations

import csv
import io
import json
import os
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any

import pytest
from google.cloud import pubsub_v1

from local_stack.functions import FunctionProcess
from local_stack.processes import free_port
from srp_bundle.callback_auth import CallbackSigner, deployment_scope
from srp_bundle.cli import main
from srp_bundle.cli._console import Progress
from srp_bundle.derivatives import sniff_image_format
from srp_bundle.task_state import State, TaskRecord
from srp_bundle.task_store import TaskStore

from conftest import SAMPLE_COLLECTION_ID, SEED_INPUT, WEBHOOK_SECRET, Pipeline

pytestmark = pytest.mark.integration

COMMANDS = ("submit", "status", "show", "retry", "backfill", "export")


@dataclass
class CliStack:
    """Our functions on a tasks collection of their own, and the CLI's requests topic."""

    pipeline: Pipeline
    tasks_collection: str
    store: TaskStore
    submit_task: FunctionProcess
    requests_topic: str
    subscription: str
    subscriber: pubsub_v1.SubscriberClient

    def deliver_published(self, expected: int, timeout: float = 30) -> list[dict[str, Any]]:
        """Pull what the CLI published and deliver each message to submit_task."""
        bodies: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while len(bodies) < expected and time.monotonic() < deadline:
            response = self.subscriber.pull(
                subscription=self.subscription, max_messages=100, timeout=5
            )
            for received in response.received_messages:
                answer = self.pipeline.deliver(
                    self.submit_task,
                    received.message.data,
                    message_id=received.message.message_id,
                    topic=self.requests_topic,
                )
                assert answer.status_code == 200, answer.text
                bodies.append(json.loads(received.message.data))
            if response.received_messages:
                self.subscriber.acknowledge(
                    subscription=self.subscription,
                    ack_ids=[m.ack_id for m in response.received_messages],
                )
        assert len(bodies) == expected, f"expected {expected} messages, got {bodies}"
        return bodies

    def wait_for_states(
        self, request_ids: Iterable[str], *states: str, timeout: float = 60
    ) -> list[TaskRecord]:
        """Poll until every record is in one of `states`."""
        deadline = time.monotonic() + timeout
        records: list[TaskRecord | None] = []
        while time.monotonic() < deadline:
            records = [self.store.get(request_id) for request_id in request_ids]
            if all(record is not None and record.state in states for record in records):
                return [record for record in records if record is not None]
            time.sleep(0.1)
        raise TimeoutError(
            f"not all in {states}: {[(r and (r.request_id, r.state)) for r in records]}"
        )


@pytest.fixture(scope="module")
def _cli_stack(_pipeline: Pipeline) -> CliStack:
    tasks_collection = f"cli-tasks-{uuid.uuid4().hex[:8]}"
    webhook = _pipeline.function("ingest_webhook", TASKS_COLLECTION=tasks_collection)
    submit_task = _pipeline.function(
        "submit_task", TASKS_COLLECTION=tasks_collection, WEBHOOK_URL=f"{webhook.url}/"
    )
    os.environ.update(_pipeline.base_env)
    publisher = pubsub_v1.PublisherClient()
    subscriber = pubsub_v1.SubscriberClient()
    requests_topic = f"cli-requests-{uuid.uuid4().hex[:8]}"
    topic_path = publisher.topic_path(_pipeline.project_id, requests_topic)
    publisher.create_topic(name=topic_path)
    subscription = subscriber.subscription_path(_pipeline.project_id, f"{requests_topic}-sub")
    subscriber.create_subscription(name=subscription, topic=topic_path, ack_deadline_seconds=30)
    return CliStack(
        pipeline=_pipeline,
        tasks_collection=tasks_collection,
        store=TaskStore(_pipeline.firestore, tasks_collection),
        submit_task=submit_task,
        requests_topic=requests_topic,
        subscription=subscription,
        subscriber=subscriber,
    )


@pytest.fixture
def cli(pipeline: Pipeline, _cli_stack: CliStack, monkeypatch: pytest.MonkeyPatch) -> CliStack:
    """The CLI's environment pointed at the stack (each test can still override by flag)."""
    for name, value in {
        "TASKS_COLLECTION": _cli_stack.tasks_collection,
        "RENDER_REQUESTS_TOPIC": _cli_stack.requests_topic,
        "EVENTS_TOPIC": pipeline.events_topic,
        "RENDERS_BUCKET": pipeline.renders_bucket,
        "DERIVATIVES_BUCKET": pipeline.derivatives_bucket,
    }.items():
        monkeypatch.setenv(name, value)
    return _cli_stack


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run the CLI in-process; return its exit code, stdout and stderr."""
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def colored(color: str, **extra: Any) -> dict[str, Any]:
    """A valid input_data for the sample collection."""
    return {**SEED_INPUT, "pants_color": color, **extra}


# ---- help, input files, configuration, reachability ---------------------------------


def test_every_command_has_help(capsys) -> None:
    assert run(capsys, "--help")[0] == 0
    for command in COMMANDS:
        code, out, _ = run(capsys, command, "--help")
        assert code == 0
        assert f"usage: srp-bundle {command}" in out
        assert "--project" in out


def test_a_bad_input_file_names_each_bad_line_and_publishes_nothing(cli, tmp_path, capsys) -> None:
    jsonl = tmp_path / "broken.jsonl"
    jsonl.write_text(
        json.dumps(colored("#000000"))
        + "\n{not json\n[1, 2]\n"
        + json.dumps({"input_data": colored("#111111"), "priority": "high"})
        + "\n"
        + json.dumps(colored("#222222", request_id="same"))
        + "\n"
        + json.dumps(colored("#333333", request_id="same"))
        + "\n"
        # Deep enough for json.loads' RecursionError, and the old depth check's quadratic case.
        + "[" * 100_000
        + "\n"
        + '"\\' * 30_000
        + "\n"
    )
    code, _, err = run(capsys, "submit", str(jsonl), "--collection-id", SAMPLE_COLLECTION_ID)
    assert code == 2
    assert f"{jsonl}:2: row is not JSON" in err
    assert f"{jsonl}:3: expected a JSON object, got list" in err
    assert f"{jsonl}:4: priority must be an integer" in err
    assert f"{jsonl}:6: request_id 'same' is already used on line 5" in err
    assert f"{jsonl}:7: row nests arrays/objects deeper than 32 levels" in err
    assert f"{jsonl}:8: row is not JSON: Unterminated string" in err
    assert "nothing published" in err
    assert "Traceback" not in err

    table = tmp_path / "broken.csv"
    table.write_text("bg,pants,pants_color\nRareFlare3.png,stepper,#fff\nRareFlare3.png,a,b,c\n")
    code, _, err = run(capsys, "submit", str(table), "--collection-id", SAMPLE_COLLECTION_ID)
    assert code == 2
    assert f"{table}:3: 4 values for 3 columns" in err

    code, _, err = run(capsys, "submit", str(table), "--collection-id", "not-a-uuid")
    assert code == 2
    assert "--collection-id must be a UUID" in err


def test_missing_configuration_names_the_variable_and_the_flag(
    cli, tmp_path, capsys, monkeypatch
) -> None:
    monkeypatch.delenv("GOOGLE_CLOUD_PROJECT")
    code, _, err = run(capsys, "status", "--batch", "any")
    assert code == 2
    assert "GOOGLE_CLOUD_PROJECT is not set" in err and "--project" in err

    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", cli.pipeline.project_id)
    monkeypatch.delenv("RENDER_REQUESTS_TOPIC")
    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps(colored("#123456")) + "\n")
    code, _, err = run(capsys, "submit", str(rows), "--collection-id", SAMPLE_COLLECTION_ID)
    assert code == 2
    assert "RENDER_REQUESTS_TOPIC is not set" in err and "--requests-topic" in err

    code, _, err = run(capsys, "submit", str(rows), "--collection-id", SAMPLE_COLLECTION_ID,
                       "--requests-topic", "no-such-topic")  # fmt: skip
    assert code == 2
    assert "no-such-topic" in err and "does not exist" in err

    code, _, err = run(capsys, "backfill")
    assert code == 2
    assert "--limit" in err
    code, _, err = run(capsys, "backfill", "--limit", "1", "--prefix", "derivatives/")
    assert code == 2
    assert "--prefix must start with render/" in err

    code, _, err = run(capsys, "status")
    assert code == 2
    assert "--collection-id and/or --batch" in err


@pytest.mark.parametrize(
    ("variable", "argv", "service"),
    [
        ("FIRESTORE_EMULATOR_HOST", ["status", "--batch", "any"], "Firestore"),
        ("STORAGE_EMULATOR_HOST", ["backfill", "--limit", "1"], "Cloud Storage"),
    ],
)
def test_an_unreachable_backend_exits_3_quickly_with_a_clear_message(
    cli, capsys, monkeypatch, variable, argv, service
) -> None:
    port = free_port()
    address = (
        f"http://127.0.0.1:{port}" if variable == "STORAGE_EMULATOR_HOST" else f"127.0.0.1:{port}"
    )
    monkeypatch.setenv(variable, address)

    code, _, err = run(capsys, *argv)

    assert code == 3
    assert f"cannot reach the {service} emulator" in err
    assert "Traceback" not in err


def test_submit_with_an_unreachable_pubsub_exits_3(cli, tmp_path, capsys, monkeypatch) -> None:
    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps(colored("#123456")) + "\n")
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", f"127.0.0.1:{free_port()}")

    code, _, err = run(capsys, "submit", str(rows), "--collection-id", SAMPLE_COLLECTION_ID)

    assert code == 3
    assert "cannot reach the Pub/Sub emulator" in err


def test_show_of_an_unknown_request_exits_1(cli, capsys) -> None:
    code, _, err = run(capsys, "show", "no-such-request")
    assert code == 1
    assert "no record for request 'no-such-request'" in err


# ---- the day-to-day: submit, status, backfill, export, show --------------------------


def test_submit_watch_backfill_export_and_show_a_batch(cli, tmp_path, capsys, unique_name) -> None:
    batch = unique_name("batch")
    stem = unique_name("items")
    explicit_id = unique_name("token-7")
    source = tmp_path / f"{stem}.jsonl"
    source.write_text(
        json.dumps(colored("#ff0000"))
        + "\n\n"
        + json.dumps(colored("#00ff00", request_id=explicit_id))
        + "\n"
        + json.dumps({"input_data": colored("#0000ff"), "metadata": {"token_id": 9}})
        + "\n"
    )
    request_ids = {f"{stem}-1", explicit_id, f"{stem}-4"}
    submit = ["submit", str(source), "--collection-id", SAMPLE_COLLECTION_ID, "--batch", batch]

    code, out, _ = run(capsys, *submit, "--dry-run")
    assert code == 0
    assert "3 rows valid; would publish 3, skip 0 already recorded" in out

    code, out, err = run(capsys, *submit, "--rate", "50")
    assert code == 0, err
    assert "3 published, 0 skipped (already recorded), 0 failed" in out
    assert "submit [" in err  # the progress bar's final line
    bodies = cli.deliver_published(4)
    assert {"batch": {"batch_id": batch, "total": 3}} in bodies  # the declaration
    members = [body for body in bodies if "request_id" in body]
    assert {body["request_id"] for body in members} == request_ids
    assert all(body["batch_id"] == batch for body in members)

    code, out, _ = run(capsys, *submit)  # resumable: every id already has a record
    assert code == 0
    assert "nothing to publish, 3 skipped (already recorded)" in out

    cli.wait_for_states(request_ids, State.RENDERED)
    code, out, _ = run(capsys, "status", "--batch", batch, "--json")
    status = json.loads(out)
    assert code == 0
    assert (status["total"], status["finished"], status["done"]) == (3, 0, False)
    assert status["batch"]["state"] == "open"

    code, _, err = run(capsys, "status", "--batch", batch, "--watch", "--interval", "0.2",
                       "--timeout", "0.5")  # fmt: skip
    assert code == 1  # nothing post-processed yet: the watch gives up, saying so
    assert "not done after 0.5s: 3 still active" in err

    # Backfill: a dry run changes nothing, then two bounded runs resume from the checkpoint.
    code, out, _ = run(capsys, "backfill", "--batch", batch, "--limit", "10", "--dry-run")
    assert code == 0
    assert out.count("would process render/") == 3
    assert all(not record.derivatives for record in cli.wait_for_states(request_ids, "rendered"))
    checkpoint = tmp_path / "backfill.json"
    backfill = ["backfill", "--batch", batch, "--checkpoint", str(checkpoint)]
    code, out, _ = run(capsys, *backfill, "--limit", "2", "--rate", "20")
    assert code == 0
    assert "2 processed" in out and "1 left for the next run" in out
    first_stop = json.loads(checkpoint.read_text())["last_object"]
    code, out, _ = run(capsys, *backfill, "--limit", "2")
    assert code == 0
    assert "1 processed" in out and "left for the next run" not in out
    assert json.loads(checkpoint.read_text())["last_object"] > first_stop
    records = cli.wait_for_states(request_ids, State.COMPLETED, timeout=10)
    assert all(len(record.derivatives) == 3 for record in records)

    code, out, _ = run(capsys, "backfill", "--batch", batch, "--limit", "5")
    assert code == 0
    assert "processed" not in out and "3 with derivatives" in out

    code, out, err = run(capsys, "status", "--batch", batch, "--watch", "--interval", "0.2")
    assert code == 0
    assert f"batch {batch}: done, total 3, completed 3, failed 0" in out
    assert "finished [########################]  3/3  100%  completed 3" in err

    # Export: a CSV manifest, a JSON one on stdout, and the contact sheet.
    manifest = tmp_path / "manifest.csv"
    sheet = tmp_path / "sheet.html"
    code, out, err = run(capsys, "export", "--batch", batch, "--output", str(manifest),
                         "--contact-sheet", str(sheet), "--hash-renders")  # fmt: skip
    assert code == 0, err
    lines = list(csv.DictReader(manifest.open()))
    assert {line["request_id"] for line in lines} == request_ids
    assert sorted(line["kind"] for line in lines) == ["derivative"] * 9 + ["render"] * 3
    by_record = {r.request_id: r for r in records}
    for line in lines:
        assert len(line["sha256"]) == 64
        if line["kind"] == "derivative":
            record = by_record[line["request_id"]]
            assert line["path"] in {d["path"] for d in record.derivatives}
            assert line["bucket"] == cli.pipeline.derivatives_bucket
        else:
            assert line["path"] == by_record[line["request_id"]].render_path

    code, out, _ = run(capsys, "export", "--batch", batch, "--format", "json")
    exported = json.loads(out)["renders"]
    assert code == 0 and {entry["request_id"] for entry in exported} == request_ids
    assert {entry["task_id"] for entry in exported} == {r.task_id for r in records}

    images = _image_sources(sheet.read_text())
    assert len(images) == 3
    for source_path, alt in images:
        thumbnail = sheet.parent / source_path
        assert thumbnail.is_file(), source_path
        assert sniff_image_format(thumbnail.read_bytes()[:32]) in ("webp", "png")
        assert alt in request_ids

    code, out, _ = run(capsys, "show", explicit_id)
    assert code == 0
    assert "state" in out and "completed" in out and "events (" in out
    code, out, _ = run(capsys, "show", explicit_id, "--json")
    shown = json.loads(out)
    assert shown["record"]["request_id"] == explicit_id
    assert shown["record"]["batch_id"] == batch
    kinds = [event["kind"] for event in shown["events"]]
    assert "transition" in kinds and "derivatives" in kinds


def test_a_csv_file_is_submitted_with_generated_ids(cli, tmp_path, capsys, unique_name) -> None:
    stem = unique_name("sheet")
    source = tmp_path / f"{stem}.csv"
    source.write_text(
        "request_id,bg,pants,pants_color\n"
        ",RareFlare3.png,stepper,#101010\n"
        f"{stem}-own,RareFlare3.png,stepper,\n"
    )
    code, out, _ = run(capsys, "submit", str(source), "--collection-id", SAMPLE_COLLECTION_ID,
                       "--requests-topic", cli.requests_topic, "--priority", "80")  # fmt: skip
    assert code == 0
    assert "2 published" in out
    bodies = {body["request_id"]: body for body in cli.deliver_published(2)}
    assert set(bodies) == {f"{stem}-2", f"{stem}-own"}
    assert bodies[f"{stem}-2"]["input_data"] == {
        "bg": "RareFlare3.png",
        "pants": "stepper",
        "pants_color": "#101010",
    }
    assert "pants_color" not in bodies[f"{stem}-own"]["input_data"]  # empty cell left out
    assert {body["priority"] for body in bodies.values()} == {80}


# ---- failures and retries ------------------------------------------------------------


def test_retry_re_drives_failed_requests_as_linked_requests(
    cli, tmp_path, capsys, unique_name, monkeypatch
) -> None:
    batch = unique_name("batch")
    stem = unique_name("fails")
    source = tmp_path / f"{stem}.jsonl"
    source.write_text(json.dumps(colored("#aa0000")) + "\n" + json.dumps(colored("#00aa00")) + "\n")
    originals = [f"{stem}-1", f"{stem}-2"]
    cli.pipeline.srp.control.set_faults(srp_render_fails_rate=1.0)
    code, _, _ = run(capsys, "submit", str(source), "--collection-id", SAMPLE_COLLECTION_ID,
                     "--batch", batch)  # fmt: skip
    assert code == 0
    cli.deliver_published(3)  # the declaration and the two requests
    cli.wait_for_states(originals, State.FAILED)
    cli.pipeline.srp.control.set_faults()

    code, out, _ = run(capsys, "status", "--batch", batch)
    assert code == 1
    assert f"batch {batch}: done, total 2, completed 0, failed 2" in out
    assert "failed requests (first 2, by request id):" in out
    assert out.count("srp_render_failed") == 2

    code, out, _ = run(capsys, "retry", "--batch", batch, "--dry-run")
    assert code == 0
    assert f"{originals[0]} -> {originals[0]}-retry1" in out and "dry run" in out

    monkeypatch.setattr("sys.stdin", io.StringIO("n\n"))
    code, _, err = run(capsys, "retry", "--batch", batch)
    assert code == 1
    assert "declined: nothing published" in err

    code, out, _ = run(capsys, "retry", "--batch", batch, "--yes")
    assert code == 0
    assert "2 published" in out
    bodies = cli.deliver_published(2)
    assert {(b["request_id"], b["retry_of"]) for b in bodies} == {
        (f"{original}-retry1", original) for original in originals
    }
    retries = cli.wait_for_states([f"{o}-retry1" for o in originals], State.RENDERED)
    assert all(record.batch_id == batch for record in retries)

    code, out, _ = run(capsys, "status", "--batch", batch, "--json")
    status = json.loads(out)
    assert code == 1  # the retries are still rendering: no item is completed yet
    assert status["unresolved_failures"] == 2
    assert {(f["request_id"], f["retried_as"]) for f in status["failed"]} == {
        (original, f"{original}-retry1") for original in originals
    }

    code, out, _ = run(capsys, "retry", "--batch", batch, "--yes")
    assert code == 0
    assert "nothing to retry" in out and out.count("already retried") == 2

    code, _, err = run(capsys, "retry", f"{originals[0]}-retry1", "--yes")
    assert code == 1
    assert "is rendered, not failed" in err


# ---- the progress bar ----------------------------------------------------------------


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_progress_bar_redraws_in_place_on_a_terminal_and_writes_lines_elsewhere() -> None:
    now = [0.0]
    terminal, log = _Terminal(), io.StringIO()
    bars = [Progress("work", 4, stream=s, clock=lambda: now[0]) for s in (terminal, log)]
    for step in range(4):
        now[0] += 3.0
        for bar in bars:
            bar.advance(note=f"step {step}")
    for bar in bars:
        bar.finish()

    assert terminal.getvalue().count("\r") == 5 and terminal.getvalue().endswith("\n")
    assert "\r" not in log.getvalue()
    lines = log.getvalue().splitlines()
    assert len(lines) == 3  # the first update, one 5 s later, and the final line
    assert lines[-1].startswith("work [########################]  4/4  100%")


class _Images(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images: list[tuple[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            found = dict(attrs)
            self.images.append((found.get("src") or "", found.get("alt") or ""))


def _image_sources(page: str) -> list[tuple[str, str]]:
    parser = _Images()
    parser.feed(page)
    return parser.images


# ---- revoke-tokens ----------------------------------------------------------------------


def test_revoke_tokens_replaces_the_nonce_so_old_tokens_are_refused(
    cli, capsys, unique_name
) -> None:
    request_id = unique_name("leaked")
    nonce = "0123456789abcdef0123456789abcdef"
    cli.store.create(
        TaskRecord(request_id=request_id, collection_id=SAMPLE_COLLECTION_ID, callback_nonce=nonce)
    )
    signer = CallbackSigner(
        deployment_scope(cli.pipeline.project_id, cli.tasks_collection), (WEBHOOK_SECRET,)
    )
    leaked = signer.token(request_id, nonce)

    code, out, _ = run(capsys, "revoke-tokens", request_id, "no-such-request")

    assert code == 1  # one request had no record
    assert f"{request_id}: callback tokens revoked" in out
    assert "no-such-request: no such record" in out
    record = cli.store.get(request_id)
    assert record is not None and record.callback_nonce not in (None, nonce)
    assert not signer.is_valid(leaked, request_id, record.callback_nonce)
