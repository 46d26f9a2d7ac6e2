"""The emulated SRP: tasks, their priority queue, parallel renders, callbacks and the logs."""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from local_stack.srp_emulator.callbacks import (
    CallbackDestination,
    CallbackSender,
    CallbackSpecError,
    DeliveryPolicy,
    callback_payload,
    parse_callback_urls,
)
from local_stack.srp_emulator.catalog import Collection, InputDataError
from local_stack.srp_emulator.faults import FaultInjector, TaskFaults
from local_stack.srp_emulator.renderer import render_outputs

if TYPE_CHECKING:  # assets.py imports RequestError from here
    from local_stack.srp_emulator.assets import AssetStore

logger = logging.getLogger(__name__)

NEW, IN_PROGRESS, DONE, FAILED = "new", "in_progress", "done", "failed"
TERMINAL_STATUSES = (DONE, FAILED)
DEFAULT_PRIORITY = 50
_LOG_LIMIT = 20_000


class RenderStore(Protocol):
    """Where finished renders go (the renders bucket)."""

    def upload(self, path: str, data: bytes) -> None:
        """Write `data` at `path`, replacing what is there."""


class RequestError(Exception):
    """A request SRP refuses: HTTP status, a readable detail and, if any, the field at fault."""

    def __init__(self, status: int, detail: str, field_path: str | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.field_path = field_path

    def body(self) -> dict[str, Any]:
        """The JSON error body."""
        body: dict[str, Any] = {"detail": self.detail}
        if self.field_path:
            body["field"] = self.field_path
        return body


@dataclass
class EngineSettings:
    """Behaviour fixed for the life of the process."""

    render_size: int = 2048
    parallel: int = 2
    queue_seconds: float = 0.5  # least time a task stays `new`
    render_seconds: float = 1.0  # time a task stays `in_progress` besides the real render
    delivery: DeliveryPolicy = field(default_factory=DeliveryPolicy)


@dataclass
class _Announcement:
    status: str
    payload: dict[str, Any]
    delay_seconds: float = 0.0
    fault: str | None = None
    after_delivery: Callable[[], None] | None = None


@dataclass
class Task:
    """One render task, as SRP keeps it."""

    id: str
    sequence: int
    collection: Collection
    input_data: dict[str, Any]  # verbatim, as submitted
    render_input: dict[str, str]  # validated and normalised
    priority: int
    callback_urls: list[Any]  # verbatim entries, as submitted
    targets: list[CallbackDestination]
    created_by: dict[str, Any]
    tags: list[str]
    creation_date: datetime
    status: str = NEW
    jobs: list[int] = field(default_factory=list)
    failure_reason: str | None = None
    output_files: list[str] = field(default_factory=list)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    uploaded_at: datetime | None = None
    injected_faults: list[str] = field(default_factory=list)
    start_order: int | None = None
    faults: TaskFaults | None = None  # drawn when the render starts
    _held_announcement: _Announcement | None = None
    _outbox: queue.Queue[_Announcement | None] | None = None

    def public_view(self) -> dict[str, Any]:
        """The seed's task shape, exactly (GET /api/v1/tasks and the POST answer)."""
        return {
            "id": self.id,
            "collection": self.collection.public_view(),
            "creation_date": self.creation_date.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "status": self.status,
            "enabled": True,
            "input_data": dict(self.input_data),
            "options": {"priority": self.priority, "callback_urls": list(self.callback_urls)},
            "created_by": dict(self.created_by),
            "tags": list(self.tags),
            "jobs": list(self.jobs),
        }

    def control_view(self) -> dict[str, Any]:
        """The public shape plus what only the emulator knows (for tests)."""
        return {
            "task": self.public_view(),
            "failure_reason": self.failure_reason,
            "output_files": list(self.output_files),
            "injected_faults": list(self.injected_faults),
            "start_order": self.start_order,
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
            "uploaded_at": _iso(self.uploaded_at),
        }


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


class Engine:
    """Accepts tasks, renders them by priority on `parallel` workers and sends the callbacks."""

    def __init__(
        self,
        settings: EngineSettings,
        collections: dict[str, Collection],
        store: RenderStore,
        faults: FaultInjector,
        assets: AssetStore | None = None,
    ) -> None:
        self.settings = settings
        self.assets = assets
        self.collections = collections
        self.store = store
        self.faults = faults
        self.changed = threading.Condition()
        self.stopping = threading.Event()
        self.tasks: dict[str, Task] = {}
        self.requests_log: deque[dict[str, Any]] = deque(maxlen=_LOG_LIMIT)
        self.callbacks_log: deque[dict[str, Any]] = deque(maxlen=_LOG_LIMIT)
        self.paused = False
        # Set by the control API: every held delay (srp_late_done, srp_create_then_hang) ends now.
        self.released = False
        self.active_renders = 0
        self.max_active_renders = 0
        self._waiting: list[Task] = []
        self._sequence = itertools.count(1)
        self._job_ids = itertools.count(1001)
        self._start_orders = itertools.count(1)
        self._sender = CallbackSender(settings.delivery, self.stopping)
        self._workers: list[threading.Thread] = []

    # Lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        """Start the render workers."""
        for number in range(self.settings.parallel):
            worker = threading.Thread(target=self._work, name=f"render-{number}", daemon=True)
            worker.start()
            self._workers.append(worker)

    def stop(self) -> None:
        """Ask workers and deliveries to stop; they are daemons, so nothing waits on them."""
        self.stopping.set()
        with self.changed:
            self.changed.notify_all()
        self._sender.close()

    def reset(self) -> None:
        """Forget every task and log entry; tasks still rendering finish unobserved."""
        with self.changed:
            self.tasks.clear()
            self._waiting.clear()
            # Task numbers seed each task's faults: after a reset a run replays from 1.
            self._sequence = itertools.count(1)
            self.requests_log.clear()
            self.callbacks_log.clear()
            self.paused = False
            self.released = False
            self.max_active_renders = self.active_renders
            self.changed.notify_all()
        if self.assets is not None:
            self.assets.reset()

    def set_paused(self, paused: bool) -> None:
        """Hold or release the queue (tasks already rendering carry on)."""
        with self.changed:
            self.paused = paused
            self.changed.notify_all()

    def hold(self, seconds: float) -> bool:
        """Wait `seconds`, or less if released or stopping; True if the emulator is stopping."""
        with self.changed:
            self.changed.wait_for(lambda: self.stopping.is_set() or self.released, seconds)
        return self.stopping.is_set()

    def release_held(self) -> None:
        """End every held delay, now and until the next reset (tests use it to go on)."""
        with self.changed:
            self.released = True
            self.changed.notify_all()

    def wait_until(self, condition: Callable[[], bool], timeout: float) -> bool:
        """Block until `condition()` holds (checked on every change) or the timeout passes."""
        with self.changed:
            return self.changed.wait_for(condition, timeout)

    def log_request(self, entry: dict[str, Any]) -> None:
        """Keep one received API request for inspection."""
        with self.changed:
            self.requests_log.append(entry)
            self.changed.notify_all()

    # API -----------------------------------------------------------------------------------

    def create_task(self, body: Any, created_by: dict[str, Any]) -> Task:
        """Validate a POST body and queue its task, or raise RequestError."""
        if not isinstance(body, dict):
            raise RequestError(400, "the request body must be a JSON object")
        collection_id = body.get("collection_id")
        if not isinstance(collection_id, str) or not collection_id:
            raise RequestError(
                400, "collection_id is required (the collection UUID)", "collection_id"
            )
        collection = self.collections.get(collection_id.strip().lower())
        if collection is None:
            raise RequestError(400, f"collection '{collection_id}' does not exist", "collection_id")
        if not collection.enabled:
            raise RequestError(
                400,
                f"collection '{collection.name}' ({collection_id}) is disabled",
                "collection_id",
            )
        if "input_data" not in body:
            raise RequestError(400, "input_data is required", "input_data")
        try:
            render_input = collection.validate_input(body["input_data"])
        except InputDataError as error:
            raise RequestError(400, str(error), error.field_path) from error
        options = body.get("render_options") or {}
        if not isinstance(options, dict):
            raise RequestError(400, "render_options must be a JSON object", "render_options")
        try:
            targets = parse_callback_urls(options.get("callback_urls"))
        except CallbackSpecError as error:
            raise RequestError(400, str(error), error.field_path) from error
        priority = options.get("priority", DEFAULT_PRIORITY)
        if isinstance(priority, bool) or not isinstance(priority, int):
            raise RequestError(
                400, "render_options.priority must be an integer", "render_options.priority"
            )
        tags = options.get("tags", [])
        if not isinstance(tags, list) or not all(isinstance(tag, str) for tag in tags):
            raise RequestError(
                400, "render_options.tags must be a list of strings", "render_options.tags"
            )
        raw_callbacks = options.get("callback_urls")
        task = Task(
            id=str(uuid.uuid4()),
            sequence=next(self._sequence),
            collection=collection,
            input_data=body["input_data"],
            render_input=render_input,
            priority=priority,
            callback_urls=[] if raw_callbacks is None else _as_list(raw_callbacks),
            targets=targets,
            created_by=created_by,
            tags=tags,
            creation_date=datetime.now(UTC),
        )
        with self.changed:
            self.tasks[task.id] = task
            self._waiting.append(task)
            self.changed.notify_all()
        return task

    def get_task(self, task_id: str) -> Task | None:
        """The task with this id, if any."""
        with self.changed:
            return self.tasks.get(task_id)

    # Rendering -----------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            task = self._next_task()
            if task is None:
                return
            try:
                self._render(task)
            except Exception:  # a worker must survive anything one task does
                logger.exception("render worker failed on task %s", task.id)
            finally:
                with self.changed:
                    self.active_renders -= 1
                    self.changed.notify_all()

    def _next_task(self) -> Task | None:
        with self.changed:
            while not self.stopping.is_set():
                if not self.paused and self._waiting:
                    now = datetime.now(UTC).timestamp()
                    ready_at = {
                        task.id: task.creation_date.timestamp() + self.settings.queue_seconds
                        for task in self._waiting
                    }
                    ready = [task for task in self._waiting if ready_at[task.id] <= now]
                    if ready:
                        # Highest priority first; first come, first served within a priority.
                        task = max(ready, key=lambda task: (task.priority, -task.sequence))
                        self._waiting.remove(task)
                        task.start_order = next(self._start_orders)
                        self.active_renders += 1
                        self.max_active_renders = max(self.max_active_renders, self.active_renders)
                        return task
                    self.changed.wait(max(0.01, min(ready_at.values()) - now))
                else:
                    self.changed.wait()
            return None

    def _render(self, task: Task) -> None:
        # Per-task faults are drawn up front, in a fixed order, from the task's own RNG (seed
        # and task number), so a seed replays a run whatever the interleaving.
        task.faults = self.faults.for_task(task.sequence)
        fails = task.faults.hits("srp_render_fails")
        out_of_order = task.faults.hits("srp_cb_out_of_order")
        early_done = task.faults.hits("srp_early_done")
        late_done = task.faults.hits("srp_late_done")
        config = task.faults.config
        with self.changed:
            task.status = IN_PROGRESS
            task.jobs.append(next(self._job_ids))
            task.started_at = datetime.now(UTC)
            if out_of_order:
                task.injected_faults.append("srp_cb_out_of_order")
            self.changed.notify_all()
        self._announce(task, _Announcement(IN_PROGRESS, self._payload(task, IN_PROGRESS)))
        if self.stopping.wait(self.settings.render_seconds):
            return
        try:
            if fails:
                raise RuntimeError(config.srp_render_fails_reason)
            images = (
                self.assets.layer_images(task.collection, task.render_input) if self.assets else {}
            )
            folder = f"render/{task.collection.name}/{task.id}"
            files = [
                (f"{folder}/{name}", data)
                for name, data in render_outputs(
                    task.collection, task.render_input, self.settings.render_size, images
                )
            ]
            paths = [path for path, _ in files]
            if early_done:
                self._finish(
                    task,
                    DONE,
                    output_files=paths,
                    fault="srp_early_done",
                    after_delivery=lambda: self._upload_later(
                        task, files, config.srp_early_done_upload_delay
                    ),
                )
                return
            for path, data in files:
                self._upload(task, path, data)
            self._finish(
                task,
                DONE,
                output_files=paths,
                delay_seconds=config.srp_late_done_delay if late_done else 0.0,
                fault="srp_late_done" if late_done else None,
            )
        except Exception as error:
            reason = str(error) if fails else f"render failed: {type(error).__name__}: {error}"
            if fails:
                task.injected_faults.append("srp_render_fails")
            self._finish(task, FAILED, failure_reason=reason)

    def _upload(self, task: Task, path: str, png: bytes) -> None:
        self.store.upload(path, png)
        with self.changed:
            task.uploaded_at = datetime.now(UTC)
            self.changed.notify_all()

    def _upload_later(
        self, task: Task, files: list[tuple[str, bytes]], delay_seconds: float
    ) -> None:
        if self.stopping.wait(delay_seconds):
            return
        for path, data in files:
            try:
                self._upload(task, path, data)
            except Exception:
                logger.exception("late upload of %s failed", path)

    def _finish(
        self,
        task: Task,
        status: str,
        *,
        output_files: list[str] | None = None,
        failure_reason: str | None = None,
        delay_seconds: float = 0.0,
        fault: str | None = None,
        after_delivery: Callable[[], None] | None = None,
    ) -> None:
        with self.changed:
            task.status = status
            task.output_files = output_files or []
            task.failure_reason = failure_reason
            task.finished_at = datetime.now(UTC)
            if fault:
                task.injected_faults.append(fault)
            self.changed.notify_all()
        self._announce(
            task,
            _Announcement(
                status,
                self._payload(task, status),
                delay_seconds=delay_seconds,
                fault=fault,
                after_delivery=after_delivery,
            ),
        )

    # Callbacks -----------------------------------------------------------------------------

    def _payload(self, task: Task, status: str) -> dict[str, Any]:
        return callback_payload(task.id, status, datetime.now(UTC), task.output_files)

    def _announce(self, task: Task, announcement: _Announcement) -> None:
        if task._outbox is None:
            task._outbox = queue.Queue()
            threading.Thread(
                target=self._deliver_all, args=(task, task._outbox), daemon=True
            ).start()
        if announcement.status == IN_PROGRESS and "srp_cb_out_of_order" in task.injected_faults:
            task._held_announcement = announcement
            return
        task._outbox.put(announcement)
        if announcement.status in TERMINAL_STATUSES:
            if task._held_announcement is not None:
                held, task._held_announcement = task._held_announcement, None
                held.fault = "srp_cb_out_of_order"
                task._outbox.put(held)
            task._outbox.put(None)

    def _deliver_all(self, task: Task, outbox: queue.Queue[_Announcement | None]) -> None:
        while (announcement := outbox.get()) is not None:
            if announcement.delay_seconds and self.hold(announcement.delay_seconds):
                return
            faults = task.faults or self.faults.for_task(task.sequence)
            dropped = faults.hits("srp_cb_drop")
            duplicated = faults.hits("srp_cb_duplicate")
            for target in task.targets:
                if dropped:
                    self._log_callback(task, announcement, target, [], fault="srp_cb_drop")
                    continue
                for copy in range(2 if duplicated else 1):
                    attempts = self._sender.deliver(target, announcement.payload)
                    fault = "srp_cb_duplicate" if copy else announcement.fault
                    self._log_callback(task, announcement, target, attempts, fault=fault)
                    if self.stopping.is_set():
                        return
            if announcement.after_delivery is not None:
                announcement.after_delivery()

    def _log_callback(
        self,
        task: Task,
        announcement: _Announcement,
        target: CallbackDestination,
        attempts: list[dict[str, Any]],
        fault: str | None,
    ) -> None:
        entry = {
            "task_id": task.id,
            "status": announcement.status,
            "url": target.url,
            "method": target.method,
            "payload": announcement.payload,
            "fault": fault,
            "delivered": bool(attempts) and attempts[-1]["delivered"],
            "attempts": attempts,
            "logged_at": datetime.now(UTC).isoformat(),
        }
        with self.changed:
            self.callbacks_log.append(entry)
            self.changed.notify_all()


def _as_list(raw: Any) -> list[Any]:
    return list(raw) if isinstance(raw, list) else [raw]
