"""Callback targets in the seed's three forms, and their delivery with retries."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx

ALLOWED_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


class CallbackSpecError(ValueError):
    """A callback URL entry is malformed; `field_path` names it."""

    def __init__(self, field_path: str, message: str) -> None:
        super().__init__(f"{field_path}: {message}")
        self.field_path = field_path
        self.message = message


@dataclass(frozen=True)
class CallbackDestination:
    """Where and how to deliver one callback: the normalised form of a seed entry."""

    url: str
    method: str = "POST"
    headers: tuple[tuple[str, str], ...] = ()
    data: tuple[tuple[str, Any], ...] = ()


def parse_callback_urls(raw: Any) -> list[CallbackDestination]:
    """Accept a string, a dict, or a list of strings and dicts; raise CallbackSpecError."""
    field_path = "render_options.callback_urls"
    if raw is None:
        return []
    if isinstance(raw, str | dict):
        return [_parse_entry(raw, field_path)]
    if not isinstance(raw, list):
        raise CallbackSpecError(field_path, "must be a URL, an object or a list of them")
    return [_parse_entry(entry, f"{field_path}[{index}]") for index, entry in enumerate(raw)]


def _parse_entry(entry: Any, field_path: str) -> CallbackDestination:
    if isinstance(entry, str):
        return CallbackDestination(url=_checked_url(entry, field_path))
    if not isinstance(entry, dict):
        raise CallbackSpecError(field_path, "must be a URL string or an object with 'url'")
    if "url" not in entry:
        raise CallbackSpecError(f"{field_path}.url", "is required")
    method = entry.get("method", "post")
    if not isinstance(method, str) or method.upper() not in ALLOWED_METHODS:
        raise CallbackSpecError(
            f"{field_path}.method", f"{method!r} is not one of {', '.join(ALLOWED_METHODS)}"
        )
    headers = entry.get("headers") or {}
    if not isinstance(headers, dict) or not all(
        isinstance(name, str) and isinstance(value, str) for name, value in headers.items()
    ):
        raise CallbackSpecError(f"{field_path}.headers", "must map header names to strings")
    data = entry.get("data") or {}
    if not isinstance(data, dict):
        raise CallbackSpecError(f"{field_path}.data", "must be a JSON object")
    return CallbackDestination(
        url=_checked_url(entry["url"], f"{field_path}.url"),
        method=method.upper(),
        headers=tuple(headers.items()),
        data=tuple(data.items()),
    )


def _checked_url(url: Any, field_path: str) -> str:
    if not isinstance(url, str):
        raise CallbackSpecError(field_path, "must be a string")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise CallbackSpecError(field_path, f"{url!r} is not an http(s) URL")
    return url


def callback_timestamp(moment: datetime) -> str:
    """The seed's webhook timestamp: `2023-05-22T11:40:31.263Z` (UTC, milliseconds)."""
    moment = moment.astimezone(UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond // 1000:03d}Z"


def callback_payload(
    task_id: str, status: str, moment: datetime, output_files: list[str] | None
) -> dict[str, Any]:
    """The seed's webhook body; `output_files` only when the status is done."""
    payload: dict[str, Any] = {}
    if status == "done":
        payload["output_files"] = list(output_files or [])
    payload.update(status=status, task_id=task_id, timestamp=callback_timestamp(moment))
    return payload


@dataclass(frozen=True)
class CallbackRequest:
    """The HTTP request SRP sends to one target for one status change."""

    method: str
    url: str
    headers: dict[str, str]
    body: dict[str, Any]


def callback_request(target: CallbackDestination, payload: dict[str, Any]) -> CallbackRequest:
    """The request for `payload` to `target`: its method and headers, its `data` merged in."""
    # The service's own fields win over `data`: a producer cannot forge the status.
    body = {**dict(target.data), **payload}
    headers = {"Content-Type": "application/json", **dict(target.headers)}
    return CallbackRequest(target.method, target.url, headers, body)


@dataclass
class DeliveryPolicy:
    """How hard to try: attempts per callback, exponential backoff, per-request timeout."""

    attempts: int = 4
    backoff_seconds: float = 0.5
    backoff_max_seconds: float = 10.0
    timeout_seconds: float = 5.0


class CallbackSender:
    """Sends one callback to one target, retrying failures with backoff, logging every attempt."""

    def __init__(self, policy: DeliveryPolicy, stop: threading.Event) -> None:
        self.policy = policy
        self._stop = stop
        self._client = httpx.Client(timeout=policy.timeout_seconds, follow_redirects=False)

    def close(self) -> None:
        """Release the HTTP connections."""
        self._client.close()

    def deliver(self, target: CallbackDestination, payload: dict[str, Any]) -> list[dict[str, Any]]:
        """Deliver until a 2xx answer or the attempts run out; return one record per attempt."""
        request = callback_request(target, payload)
        body, headers = request.body, request.headers
        content = json.dumps(body).encode("utf-8")
        attempts: list[dict[str, Any]] = []
        for attempt in range(1, self.policy.attempts + 1):
            record: dict[str, Any] = {
                "url": target.url,
                "method": target.method,
                "headers": headers,
                "body": body,
                "attempt": attempt,
                "sent_at": datetime.now(UTC).isoformat(),
                "response_status": None,
                "response_body": None,
                "error": None,
            }
            try:
                response = self._client.request(
                    target.method, target.url, content=content, headers=headers
                )
                record["response_status"] = response.status_code
                record["response_body"] = response.text[:500]
                delivered = 200 <= response.status_code < 300
            except httpx.HTTPError as error:
                record["error"] = f"{type(error).__name__}: {error}"
                delivered = False
            record["delivered"] = delivered
            attempts.append(record)
            if delivered or attempt == self.policy.attempts:
                break
            backoff = min(
                self.policy.backoff_max_seconds, self.policy.backoff_seconds * 2 ** (attempt - 1)
            )
            if self._stop.wait(backoff):
                break
        return attempts
