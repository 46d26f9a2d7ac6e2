"""Pub/Sub, simulated: push delivery with ack deadlines, backoff and dead-lettering, and the
publisher of outgoing events with production's limits and failures."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from sim.world import World
from srp_bundle.dead_letters import DELIVERY_COUNT_ATTRIBUTE, SOURCE_SUBSCRIPTION_ATTRIBUTE
from srp_bundle.trigger_events import PubsubMessage

ACK_DEADLINE = 60.0
REQUESTS_SUBSCRIPTION = "projects/sim/subscriptions/render-requests"


class PushDelivery:
    """One message on a push subscription: at-least-once, backoff, ack deadline, dead letter."""

    def __init__(
        self,
        world: World,
        message: PubsubMessage,
        name: str,
        handler: Callable[[PubsubMessage], Any],
        *,
        on_error: Callable[[BaseException], None],
        dead_letter: Callable[[PubsubMessage, int], None] | None = None,
        max_attempts: int = 0,
    ) -> None:
        self.world = world
        self.message = message
        self.name = name
        self.handler = handler
        self.on_error = on_error  # sees every error a handler raised (invariant 8)
        self.dead_letter = dead_letter
        self.max_attempts = max_attempts
        self.attempts = 0
        self.acked = False
        self.open_attempt = 0

    def start(self, delay: float) -> None:
        """Deliver the message `delay` seconds from now."""
        self.world.at(delay, self._deliver)

    def _deliver(self) -> None:
        world = self.world
        if self.acked:
            return
        self.attempts += 1
        attempt = self.attempts
        self.open_attempt = attempt
        message = PubsubMessage(
            self.message.message_id,
            self.message.data,
            self.message.attributes,
            self.message.publish_time,
            delivery_attempt=attempt,
        )
        actor = f"{self.name} m{self.message.message_id[-4:]}#{attempt}"
        world.spawn(
            0.0, actor, lambda: self.handler(message), lambda e, _: self._settle(attempt, e)
        )
        world.at(ACK_DEADLINE, lambda: self._deadline(attempt))
        if world.fault("ps_concurrent_delivery"):
            world.note(actor, "Pub/Sub delivers the same message again, concurrently")
            world.spawn(world.rng.uniform(0, 2), actor + "'", lambda: self.handler(message))

    def _deadline(self, attempt: int) -> None:
        if self.open_attempt == attempt and not self.acked:
            self.world.note(None, f"ack deadline of attempt {attempt} expires while it runs")
            self._failed(attempt)

    def _settle(self, attempt: int, error: BaseException | None) -> None:
        if error is not None:
            self.on_error(error)
        if self.open_attempt != attempt or self.acked:
            return  # an expired attempt finishing late: Pub/Sub already moved on
        if error is None:
            self.acked = True
            world = self.world
            if world.fault("ps_redeliver_after_ack"):
                world.note(None, "Pub/Sub redelivers an acknowledged message")
                self.acked = False
                self.open_attempt = 0
                self.start(world.rng.uniform(1, 600))
            return
        self._failed(attempt)

    def _failed(self, attempt: int) -> None:
        world = self.world
        self.open_attempt = 0
        if self.dead_letter is not None and self.attempts >= self.max_attempts:
            self.acked = True
            self.dead_letter(self.message, self.attempts)
            return
        backoff = min(600.0, 10.0 * 2 ** (self.attempts - 1)) * world.rng.uniform(0.8, 1.0)
        self.start(backoff)


def dead_letter_message(
    message: PubsubMessage, message_id: str, attempts: int, now: Any
) -> PubsubMessage:
    """What Pub/Sub forwards to the dead-letter topic: the data, where and how often it failed."""
    attributes = {
        DELIVERY_COUNT_ATTRIBUTE: str(attempts),
        SOURCE_SUBSCRIPTION_ATTRIBUTE: REQUESTS_SUBSCRIPTION,
    }
    return PubsubMessage(message_id, message.data, attributes, now)


class _Future:
    def __init__(self, error: Exception | None) -> None:
        self.error = error

    def result(self, timeout: float | None = None) -> str:
        if self.error is not None:
            raise self.error
        return "1"


class Publisher:
    """The Pub/Sub PublisherClient of outgoing events: production's limits, failures."""

    def __init__(self, world: World, on_publish: Callable[[str, str, str], None]) -> None:
        self.world = world
        self.on_publish = on_publish  # (event_id, type, request_id) of each event accepted

    def topic_path(self, project: str, topic: str) -> str:
        """The topic's resource name, as the real client builds it."""
        return f"projects/{project}/topics/{topic}"

    def publish(self, topic: str, data: bytes, **attributes: str) -> _Future:
        """Publish one event: refused over the limits, failing on `ps_publish_fails`."""
        from google.api_core import exceptions

        world = self.world
        if not world.call(60.0):
            return _Future(exceptions.DeadlineExceeded("simulated: publish timed out"))
        for key, value in attributes.items():
            if len(key.encode()) > 256 or len(value.encode()) > 1024:
                return _Future(exceptions.InvalidArgument(f"attribute {key} is too long"))
        if len(data) > 10 * 1024 * 1024:
            return _Future(exceptions.InvalidArgument("message too large"))
        if world.fault("ps_publish_fails"):
            return _Future(exceptions.ServiceUnavailable("simulated: publish failed"))
        self.on_publish(attributes["event_id"], attributes["type"], attributes["request_id"])
        world.note(None, f"event {attributes['type']} ({json.loads(data).get('state')})")
        return _Future(None)
