"""The local Eventarc: pull from emulator subscriptions, POST CloudEvents to function URLs.

pstest has no push delivery, no retry backoff and no dead-letter policy, so this bridge
plays Eventarc and the production subscription's policies: every pulled message becomes a
binary-mode CloudEvent POSTed to the route's target; a 2xx answer acks it; anything else
schedules another attempt after an exponential backoff; after `max_attempts` failed
attempts the original message (plus the attributes Pub/Sub adds) goes to the route's
dead-letter topic and is acked. Attempts are counted here (pstest does not), and the
bridge keeps extending the ack deadline of every message it holds so pstest does not
redeliver it behind our back. Several deliveries per route run at once, as in production.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Literal

import httpx
from google.api_core import exceptions as api_exceptions
from google.cloud import pubsub_v1

from local_stack.eventarc_events import pubsub_event, storage_event_from_notification

logger = logging.getLogger(__name__)

RouteKind = Literal["pubsub", "gcs"]
# Attributes Pub/Sub adds to a message it forwards to a dead-letter topic.
DEAD_LETTER_DELIVERY_COUNT = "CloudPubSubDeadLetterSourceDeliveryCount"
DEAD_LETTER_SUBSCRIPTION = "CloudPubSubDeadLetterSourceSubscription"
DEAD_LETTER_SUBSCRIPTION_PROJECT = "CloudPubSubDeadLetterSourceSubscriptionProject"
DEAD_LETTER_PUBLISH_TIME = "CloudPubSubDeadLetterSourceTopicPublishTime"


@dataclass(frozen=True)
class Route:
    """One Eventarc trigger: a subscription whose messages go to a function URL."""

    subscription: str  # projects/<project>/subscriptions/<id>
    target_url: str
    kind: RouteKind = "pubsub"
    dead_letter_topic: str | None = None  # projects/<project>/topics/<id>; None: retry forever
    max_attempts: int = 5
    bucket: str | None = None  # gcs routes: Eventarc's `bucket` filter; other buckets are acked

    def __post_init__(self) -> None:
        if self.kind not in ("pubsub", "gcs"):
            raise ValueError(f"route kind must be 'pubsub' or 'gcs', got {self.kind!r}")
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if (
            not self.subscription.startswith("projects/")
            or "/subscriptions/" not in self.subscription
        ):
            raise ValueError(f"subscription must be a full path, got {self.subscription!r}")


@dataclass(frozen=True)
class BackoffPolicy:
    """Exponential backoff between a failed attempt and the next, as a subscription's policy."""

    minimum_backoff: float = 1.0
    maximum_backoff: float = 60.0

    def delay(self, failed_attempts: int) -> float:
        """Seconds to wait after the `failed_attempts`-th failure."""
        return float(
            min(self.maximum_backoff, self.minimum_backoff * 2 ** max(0, failed_attempts - 1))
        )


@dataclass
class _HeldMessage:
    """A pulled message the bridge holds until it is acked or dead-lettered."""

    route: _RouteRunner
    ack_id: str
    message_id: str
    data: bytes
    attributes: dict[str, str]
    publish_time: datetime
    attempts: int = 0
    last_error: str = ""


@dataclass
class DeliveryRecord:
    """One attempt, for tests and the demo: which route, which message, what answer."""

    subscription: str
    message_id: str
    attempt: int
    status: int | None  # None: no HTTP answer (connection refused, timeout)
    error: str = ""
    at: datetime = field(default_factory=lambda: datetime.now(UTC))


class _RouteRunner:
    """The pull loop and the worker pool of one route."""

    def __init__(self, bridge: Bridge, route: Route, concurrency: int) -> None:
        self.bridge = bridge
        self.route = route
        self.concurrency = concurrency
        self.project_id = route.subscription.split("/")[1]
        self.subscription_id = route.subscription.rsplit("/", 1)[1]
        self.topic_id = ""
        self.pool = ThreadPoolExecutor(
            max_workers=concurrency, thread_name_prefix=f"bridge-{self.subscription_id}"
        )
        self.in_flight = 0  # queued or running in the pool; guarded by bridge.lock
        self.thread = threading.Thread(
            target=self.pull_loop, name=f"bridge-pull-{self.subscription_id}", daemon=True
        )

    def resolve_topic(self) -> None:
        subscription = self.bridge.subscriber.get_subscription(
            request={"subscription": self.route.subscription}
        )
        self.topic_id = subscription.topic.rsplit("/", 1)[1]

    def pull_loop(self) -> None:
        bridge = self.bridge
        while not bridge.stopping.is_set():
            with bridge.lock:
                free = self.concurrency - self.in_flight
            if free <= 0:
                bridge.stopping.wait(0.01)
                continue
            try:
                # Without return_immediately, pstest waits up to 0.5 s for a message.
                response = bridge.subscriber.pull(
                    request={"subscription": self.route.subscription, "max_messages": free},
                    timeout=10,
                )
            except (api_exceptions.GoogleAPICallError, api_exceptions.RetryError) as error:
                if not bridge.stopping.is_set():
                    logger.warning("pull from %s failed: %s", self.route.subscription, error)
                    bridge.stopping.wait(0.5)
                continue
            received = list(response.received_messages)
            if not received:
                continue
            deliveries = []
            for item in received:
                message = item.message
                deliveries.append(
                    _HeldMessage(
                        route=self,
                        ack_id=item.ack_id,
                        message_id=message.message_id,
                        data=bytes(message.data),
                        attributes=dict(message.attributes),
                        publish_time=message.publish_time,
                    )
                )
            bridge.hold(deliveries)
            for delivery in deliveries:
                self.submit(delivery)

    def submit(self, delivery: _HeldMessage) -> None:
        with self.bridge.lock:
            self.in_flight += 1
        try:
            self.pool.submit(self.attempt, delivery)
        except RuntimeError:  # pool shut down: stop() releases what is still held
            with self.bridge.lock:
                self.in_flight -= 1

    def attempt(self, delivery: _HeldMessage) -> None:
        try:
            self.bridge.attempt(delivery)
        except Exception:  # a bug here must not kill the worker or lose the message
            logger.exception("delivery of %s crashed; retrying", delivery.message_id)
            self.bridge.schedule_retry(delivery)
        finally:
            with self.bridge.lock:
                self.in_flight -= 1


class Bridge:
    """Eventarc for the local stack: background threads from start() until stop()."""

    def __init__(
        self,
        routes: Sequence[Route],
        *,
        retry: BackoffPolicy | None = None,
        concurrency: int = 4,
        http_timeout: float = 60.0,
        lease_seconds: int = 60,
        subscriber: pubsub_v1.SubscriberClient | None = None,
        publisher: pubsub_v1.PublisherClient | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.retry = retry or BackoffPolicy()
        self.http_timeout = http_timeout
        # Deadlines are extended well before they lapse: every third of the lease.
        self.lease_seconds = max(10, lease_seconds)
        self.subscriber = subscriber or pubsub_v1.SubscriberClient()
        self.publisher = publisher or pubsub_v1.PublisherClient()
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.counters: Counter[str] = Counter()
        self.records: list[DeliveryRecord] = []
        self._runners = [_RouteRunner(self, route, concurrency) for route in routes]
        self._held: dict[tuple[str, str], _HeldMessage] = {}
        self._retry_heap: list[tuple[float, int, _HeldMessage]] = []
        self._retry_order = itertools.count()
        self._retry_wakeup = threading.Condition(self.lock)
        self._http = httpx.Client(
            timeout=http_timeout,
            limits=httpx.Limits(max_connections=concurrency * 4 * len(routes) or 1),
        )
        self._threads: list[threading.Thread] = []
        self._started = False

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> Bridge:
        """Check every subscription exists, then start pulling."""
        for runner in self._runners:
            runner.resolve_topic()
        self._started = True
        self._threads = [
            threading.Thread(target=self._retry_loop, name="bridge-retries", daemon=True),
            threading.Thread(target=self._lease_loop, name="bridge-leases", daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        for runner in self._runners:
            runner.thread.start()
        return self

    def stop(self) -> None:
        """Stop pulling, finish the attempts under way, hand held messages back to Pub/Sub."""
        self.stopping.set()
        with self._retry_wakeup:
            self._retry_wakeup.notify_all()
        if self._started:
            for runner in self._runners:
                runner.thread.join()
        for runner in self._runners:
            runner.pool.shutdown(wait=True, cancel_futures=True)
        for thread in self._threads:
            thread.join()
        with self.lock:
            held = list(self._held.values())
            self._held.clear()
            self._retry_heap.clear()
        self._nack(held)
        self._http.close()

    def __enter__(self) -> Bridge:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # -- observation -------------------------------------------------------------------

    def stats(self) -> dict[str, int]:
        """Counters so far: delivered, retried, dead_lettered, skipped, attempts, held."""
        with self.lock:
            snapshot = {
                name: self.counters[name]
                for name in ("delivered", "retried", "dead_lettered", "skipped", "attempts")
            }
            snapshot["held"] = len(self._held)
            return snapshot

    @property
    def delivered(self) -> int:
        """Messages acked after a 2xx answer."""
        return self.stats()["delivered"]

    @property
    def retried(self) -> int:
        """Failed attempts that were scheduled for another try."""
        return self.stats()["retried"]

    @property
    def dead_lettered(self) -> int:
        """Messages forwarded to a dead-letter topic after their last attempt."""
        return self.stats()["dead_lettered"]

    def attempts_for(self, message_id: str) -> list[DeliveryRecord]:
        """Every attempt made so far for one message id."""
        with self.lock:
            return [record for record in self.records if record.message_id == message_id]

    def wait_until(
        self, condition: Callable[[dict[str, int]], bool], timeout: float = 30.0
    ) -> dict[str, int]:
        """Block until `condition(stats())` holds; TimeoutError with the counters otherwise."""
        deadline = threading.Event()
        timer = threading.Timer(timeout, deadline.set)
        timer.start()
        try:
            while True:
                stats = self.stats()
                if condition(stats):
                    return stats
                if deadline.wait(0.02):
                    raise TimeoutError(f"bridge condition not met after {timeout}s: {stats}")
        finally:
            timer.cancel()

    # -- delivery ----------------------------------------------------------------------

    def hold(self, deliveries: Iterable[_HeldMessage]) -> None:
        """Take over pulled messages: extend their deadlines at once, then keep them leased."""
        batch = list(deliveries)
        with self.lock:
            for delivery in batch:
                key = (delivery.route.route.subscription, delivery.ack_id)
                known = self._held.get(key)
                if known is not None:
                    # pstest redelivered a message we still hold (its deadline lapsed):
                    # keep one copy so the attempt count stays right.
                    delivery.attempts = known.attempts
                self._held[key] = delivery
        self._modify_deadlines(batch, self.lease_seconds)

    def attempt(self, delivery: _HeldMessage) -> None:
        """POST one delivery; ack, retry later or dead-letter according to the answer."""
        route = delivery.route
        try:
            event = self._cloud_event(delivery)
        except ValueError as decode_error:  # an undecodable notification would only loop
            logger.warning(
                "dropping undecodable notification %s: %s", delivery.message_id, decode_error
            )
            event = None
        if event is None:
            logger.debug("no event for %s on this route, acked", delivery.message_id)
            self._finish(delivery, "skipped")
            return
        headers, body = event
        delivery.attempts += 1
        status: int | None = None
        error = ""
        try:
            response = self._http.post(route.route.target_url, headers=headers, content=body)
            status = response.status_code
            if not 200 <= status < 300:
                error = f"HTTP {status}: {response.text[:200]}"
        except httpx.HTTPError as http_error:
            error = f"{type(http_error).__name__}: {http_error}"
        with self.lock:
            self.counters["attempts"] += 1
            self.records.append(
                DeliveryRecord(
                    route.route.subscription, delivery.message_id, delivery.attempts, status, error
                )
            )
        if not error:
            self._finish(delivery, "delivered")
            return
        delivery.last_error = error
        if route.route.dead_letter_topic and delivery.attempts >= route.route.max_attempts:
            self._dead_letter(delivery)
            return
        logger.info(
            "attempt %d of %s to %s failed: %s",
            delivery.attempts,
            delivery.message_id,
            route.route.target_url,
            error,
        )
        with self.lock:
            self.counters["retried"] += 1
        self.schedule_retry(delivery)

    def schedule_retry(self, delivery: _HeldMessage) -> None:
        """Try the delivery again after the policy's backoff (the message stays leased)."""
        due = time.monotonic() + self.retry.delay(max(1, delivery.attempts))
        with self._retry_wakeup:
            heapq.heappush(self._retry_heap, (due, next(self._retry_order), delivery))
            self._retry_wakeup.notify()

    def _cloud_event(self, delivery: _HeldMessage) -> tuple[dict[str, str], bytes] | None:
        route = delivery.route
        if route.route.kind == "gcs":
            bucket = route.route.bucket
            if bucket is not None and delivery.attributes.get("bucketId") != bucket:
                return None
            return storage_event_from_notification(
                delivery.message_id, delivery.attributes, delivery.data
            )
        return pubsub_event(
            project_id=route.project_id,
            topic_id=route.topic_id,
            subscription_id=route.subscription_id,
            message_id=delivery.message_id,
            data=delivery.data,
            attributes=delivery.attributes,
            publish_time=delivery.publish_time,
        )

    def _dead_letter(self, delivery: _HeldMessage) -> None:
        route = delivery.route
        topic = route.route.dead_letter_topic
        assert topic is not None
        attributes: dict[str, str] = {
            **delivery.attributes,
            DEAD_LETTER_DELIVERY_COUNT: str(delivery.attempts),
            DEAD_LETTER_SUBSCRIPTION: route.subscription_id,
            DEAD_LETTER_SUBSCRIPTION_PROJECT: route.project_id,
            DEAD_LETTER_PUBLISH_TIME: delivery.publish_time.astimezone(UTC).isoformat(),
        }
        try:
            self.publisher.publish(topic, delivery.data, **attributes).result(timeout=30)
        except Exception as error:  # the dead-letter topic is unreachable: keep the message
            logger.warning("dead-lettering %s failed: %s", delivery.message_id, error)
            self.schedule_retry(delivery)
            return
        logger.warning(
            "%s dead-lettered to %s after %d attempts (last: %s)",
            delivery.message_id,
            topic,
            delivery.attempts,
            delivery.last_error,
        )
        self._finish(delivery, "dead_lettered")

    def _finish(self, delivery: _HeldMessage, outcome: str) -> None:
        route = delivery.route
        try:
            self.subscriber.acknowledge(
                request={"subscription": route.route.subscription, "ack_ids": [delivery.ack_id]}
            )
        except api_exceptions.GoogleAPICallError as error:
            logger.warning("ack of %s failed: %s", delivery.message_id, error)
        with self.lock:
            self._held.pop((route.route.subscription, delivery.ack_id), None)
            self.counters[outcome] += 1

    # -- background loops --------------------------------------------------------------

    def _retry_loop(self) -> None:
        with self._retry_wakeup:
            while not self.stopping.is_set():
                if not self._retry_heap:
                    self._retry_wakeup.wait(0.5)
                    continue
                due, _, delivery = self._retry_heap[0]
                wait = due - time.monotonic()
                if wait > 0:
                    self._retry_wakeup.wait(min(wait, 0.5))
                    continue
                heapq.heappop(self._retry_heap)
                self._retry_wakeup.release()
                try:
                    delivery.route.submit(delivery)
                finally:
                    self._retry_wakeup.acquire()

    def _lease_loop(self) -> None:
        interval = self.lease_seconds / 3
        while not self.stopping.wait(interval):
            with self.lock:
                held = list(self._held.values())
            self._modify_deadlines(held, self.lease_seconds)

    def _modify_deadlines(self, deliveries: Sequence[_HeldMessage], seconds: int) -> None:
        by_subscription: dict[str, list[str]] = {}
        for delivery in deliveries:
            by_subscription.setdefault(delivery.route.route.subscription, []).append(
                delivery.ack_id
            )
        for subscription, ack_ids in by_subscription.items():
            try:
                self.subscriber.modify_ack_deadline(
                    request={
                        "subscription": subscription,
                        "ack_ids": ack_ids,
                        "ack_deadline_seconds": seconds,
                    }
                )
            except api_exceptions.GoogleAPICallError as error:
                logger.warning("extending deadlines on %s failed: %s", subscription, error)

    def _nack(self, deliveries: Sequence[_HeldMessage]) -> None:
        # Deadline 0: Pub/Sub may hand these to the next subscriber right away.
        self._modify_deadlines(deliveries, 0)
