"""HTTP client for SRP's Task API: submit a render task, read a task back.

Usage::

    client = SrpClient(api_key, base_url=settings.srp_api_url, timeout=10.0)
    task = client.submit_task(
        collection_id,
        {"bg": "RareFlare3.png"},
        callback_urls=["https://a.example/cb", CallbackTarget(url=..., method="post")],
        priority=50,
    )                                  # -> SrpTask
    task = client.get_task(task.id)    # -> SrpTask
    upload = client.get_asset_upload_url(collection_id)  # -> AssetUpload (then PUT the ZIP:
    client.create_asset(upload.id)     # -> AssetUpload    srp_bundle.asset_upload)
    client.close()                     # or use `with SrpClient(...) as client:`

    callback = parse_callback(request_json)  # -> SrpCallback (no HTTP; for ingest_webhook)

`SrpClient(api_key, *, base_url, timeout, retry, transport, sleep, clock)`, or
`SrpClient.from_settings(settings)`: create one per process and reuse it (it holds a keep-alive
connection pool). Every failure is an `srp_bundle.errors.SrpError`: `SrpAuthenticationError`
(401/403), `SrpNotFoundError` (404), `SrpValidationError` (400/422, SRP's message),
`SrpRateLimitedError` (429, `retry_after`), `SrpServerError` (5xx), `SrpConnectionError` (no
answer), plain `SrpError` for anything else, including a 2xx body that is not a task.
`err.transient` says whether trying later can help; `err.may_have_reached_srp` whether a
failed POST may still have created a task (False only for a 4xx answer, 429 included).
Bad input (a non-JSON value in `input_data`, a malformed callback) raises
`InvalidMessageError` before anything is sent.

Retries follow `RetryPolicy` (`DEFAULT_RETRY`): GET is retried on 429/5xx, timeouts and
connection failures with capped, fully jittered exponential backoff, honouring `Retry-After`.
POST is retried only when the request certainly never left this process (connection refused,
DNS failure, connect timeout); after a 5xx or a read timeout it may have created a task, so the
error is raised and the caller decides (submit_task keeps its own record); a 429 is raised too,
so the caller's redelivery honours `retry_after`.

The API key is sent only in the `Authorization` header: it is left out of `repr`, log lines and
error messages (redacted even if SRP echoes it back). Every error's message and `body` are
redacted (`srp_bundle.redaction`): the key, the header values of the callbacks the call sent
(our token, the producers' credentials), anything shaped like a callback token, and every
value of a `headers` object in a JSON body.

Over 300 lines: one `_request` with its retry policy and typed errors, as the style's model
client has.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Protocol, TypeVar
from urllib.parse import urlparse

import httpx

from srp_bundle.errors import (
    ConfigurationError,
    InvalidMessageError,
    SrpAuthenticationError,
    SrpConnectionError,
    SrpError,
    SrpNotFoundError,
    SrpRateLimitedError,
    SrpServerError,
    SrpValidationError,
    parse_retry_after,
)
from srp_bundle.redaction import REDACTED, header_values, redact, redact_json
from srp_bundle.settings import DEFAULT_SRP_API_URL, SRP_API_KEY, Settings
from srp_bundle.srp_models import (
    AssetUpload,
    CallbackTarget,
    CallbackUrl,
    RawJson,
    SrpCallback,
    SrpTask,
    SubmitRequest,
    encode_json,
    parse_asset_upload,
    parse_callback,
    parse_callback_urls,
    parse_task,
)

__all__ = [
    "DEFAULT_RETRY",
    "AssetUpload",
    "CallbackTarget",
    "CallbackUrl",
    "RawJson",
    "RetryPolicy",
    "SrpCallback",
    "SrpClient",
    "SrpTask",
    "SubmitRequest",
    "parse_callback",
    "parse_callback_urls",
    "parse_task",
]

TASKS_PATH = "/api/v1/tasks"
# The documented asset routes keep their trailing slash (SRP is a Django app).
ASSET_UPLOAD_URL_PATH = "/api/v1/tasks/get_asset_upload_url/"
CREATE_ASSET_PATH = "/api/v1/tasks/create_asset/"
DEFAULT_TIMEOUT_SECONDS = 10.0
_USER_AGENT = "srp-render-bundle/0.1"
_MAX_MESSAGE_CHARS = 500

logger = logging.getLogger(__name__)
_Answer = TypeVar("_Answer")


@dataclass(frozen=True)
class RetryPolicy:
    """What is retried, how often, and how long to wait in between."""

    # Attempts in total, the first one included.
    max_attempts: int = 3
    initial_backoff_seconds: float = 0.5
    max_backoff_seconds: float = 5.0
    # A longer Retry-After is not waited for (a function has a deadline); the error is
    # raised with its `retry_after` so Pub/Sub redelivery can come back later.
    max_retry_after_seconds: float = 20.0
    retryable_statuses: frozenset[int] = frozenset({429, 500, 502, 503, 504})
    # Methods whose repetition cannot create a second task.
    idempotent_methods: frozenset[str] = frozenset({"GET", "HEAD", "OPTIONS"})

    def is_retryable(self, method: str, error: SrpError) -> bool:
        """Whether repeating `method` after `error` is both safe and possibly useful."""
        if isinstance(error, SrpConnectionError) and not error.may_have_reached_srp:
            return True
        if method.upper() not in self.idempotent_methods:
            return False
        if isinstance(error, SrpConnectionError):
            return True
        return error.status_code in self.retryable_statuses

    def backoff_seconds(
        self, retry_number: int, rand: Callable[[], float] = random.random
    ) -> float:
        """Full jitter: uniform in [0, min(cap, initial * 2**(retry_number - 1))]."""
        ceiling = min(
            self.max_backoff_seconds, self.initial_backoff_seconds * 2.0 ** max(0, retry_number - 1)
        )
        return ceiling * rand()

    def delay_before_retry(
        self,
        method: str,
        error: SrpError,
        attempts_made: int,
        retry_after: float | None = None,
        rand: Callable[[], float] = random.random,
    ) -> float | None:
        """Seconds to wait before the next attempt, or None to raise `error` now."""
        if attempts_made >= self.max_attempts or not self.is_retryable(method, error):
            return None
        if retry_after is not None:
            return retry_after if retry_after <= self.max_retry_after_seconds else None
        return self.backoff_seconds(attempts_made, rand)


DEFAULT_RETRY = RetryPolicy()


class HttpSession(Protocol):
    """What the client sends its calls through: an `httpx.Client`, or a stand-in for one."""

    def request(
        self,
        method: str,
        url: str,
        *,
        params: dict[str, str] | None = None,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        """Send one call; raise httpx's transport errors as httpx would."""

    def close(self) -> None:
        """Release the connections."""


class SrpClient:
    """SRP Task API client; one `httpx.Client` (keep-alive pool) per instance."""

    def __init__(
        self,
        api_key: str,
        *,
        base_url: str = DEFAULT_SRP_API_URL,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        retry: RetryPolicy = DEFAULT_RETRY,
        transport: httpx.BaseTransport | None = None,
        http: HttpSession | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        rand: Callable[[], float] = random.random,
    ) -> None:
        """`http` replaces the `httpx.Client` the client makes itself (the simulator's SRP);
        `transport` is handed to that `httpx.Client`; `rand` draws the backoff jitter."""
        # Secret Manager values often end with a newline, which is not a valid header value.
        api_key = api_key.strip() if isinstance(api_key, str) else ""
        if not api_key:
            raise ConfigurationError("SRP_API_KEY is not set")
        parsed = urlparse(base_url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ConfigurationError(f"SRP_API_URL must be an http(s) URL, got {base_url!r}")
        if timeout <= 0:
            raise ConfigurationError(f"SRP timeout must be positive, got {timeout!r}")
        self._api_key = api_key
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.retry = retry
        self._sleep = sleep
        self._clock = clock  # reads a Retry-After given as an HTTP date
        self._rand = rand
        self._headers = {
            "Authorization": f"Bearer {api_key}",
            "Accept": "application/json",
            "User-Agent": _USER_AGENT,
        }
        self._http: HttpSession = http or httpx.Client(
            base_url=self.base_url, timeout=httpx.Timeout(timeout), transport=transport
        )

    @classmethod
    def from_settings(cls, settings: Settings, **options: Any) -> SrpClient:
        """A client for `SRP_API_URL` with `SRP_API_KEY` and `SRP_TIMEOUT_SECONDS`."""
        return cls(
            settings.require(settings.srp_api_key, SRP_API_KEY),
            base_url=settings.srp_api_url,
            timeout=settings.srp_timeout_seconds,
            **options,
        )

    def __repr__(self) -> str:
        return f"SrpClient(base_url={self.base_url!r}, timeout={self.timeout!r})"

    def __enter__(self) -> SrpClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def submit_task(
        self,
        collection_id: str,
        input_data: dict[str, Any] | RawJson,
        *,
        callback_urls: Sequence[CallbackUrl] = (),
        priority: int | None = None,
    ) -> SrpTask:
        """Create a render task (`POST /api/v1/tasks`), never repeated once SRP may have it."""
        request = SubmitRequest(
            collection_id=collection_id,
            input_data=input_data,
            callback_urls=tuple(callback_urls),
            priority=priority,
        )
        # SRP may echo the request in an error: the callbacks' header values never go further.
        secrets = header_values(request.callback_urls)
        response = self._request("POST", TASKS_PATH, json_body=request.to_json(), secrets=secrets)
        return self._parse_answer(response, parse_task, secrets)

    def get_task(self, task_id: str, *, secrets: tuple[str, ...] = ()) -> SrpTask:
        """Read a task's current state (`GET /api/v1/tasks?id=`).

        `secrets`: values the task's callbacks carry, redacted from any error (SRP may echo them).
        """
        if not isinstance(task_id, str) or not task_id.strip():
            raise InvalidMessageError("task_id must be a non-empty string")
        response = self._request("GET", TASKS_PATH, params={"id": task_id}, secrets=secrets)
        return self._parse_answer(response, parse_task, secrets)

    def get_asset_upload_url(self, collection_id: str) -> AssetUpload:
        """Ask for a signed URL to PUT a collection's asset ZIP to (GET, so retried)."""
        if not isinstance(collection_id, str) or not collection_id.strip():
            raise InvalidMessageError("collection_id must be a non-empty string")
        response = self._request(
            "GET", ASSET_UPLOAD_URL_PATH, params={"collection_uid": collection_id.strip()}
        )
        return self._asset_from(response)

    def create_asset(self, asset_id: str) -> AssetUpload:
        """Tell SRP the archive of `asset_id` is uploaded (POST: not repeated once sent)."""
        if not isinstance(asset_id, str) or not asset_id.strip():
            raise InvalidMessageError("asset_id must be a non-empty string")
        response = self._request("POST", CREATE_ASSET_PATH, json_body={"id": asset_id.strip()})
        return self._asset_from(response)

    def _asset_from(self, response: httpx.Response) -> AssetUpload:
        return self._parse_answer(response, parse_asset_upload)

    def _parse_answer(
        self,
        response: httpx.Response,
        parse: Callable[[object], _Answer],
        secrets: tuple[str, ...] = (),
    ) -> _Answer:
        try:
            return parse(response.json())
        except (ValueError, InvalidMessageError) as exc:
            # The call itself succeeded (a POST may have created a task), so this is not
            # the caller's invalid input: report it as SRP's.
            raise SrpError(
                self._redact(
                    f"SRP answered {response.status_code} to {_describe(response.request)} "
                    f"with an unexpected body: {exc}",
                    secrets,
                ),
                status_code=response.status_code,
                body=self._redacted_body(response, secrets),
            ) from None

    def _request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        json_body: dict[str, Any] | None = None,
        secrets: tuple[str, ...] = (),
    ) -> httpx.Response:
        """Send one call, retrying as `self.retry` allows; return a 2xx response or raise.

        `secrets` (values the call carries besides the key) are redacted from any error.
        """
        content: bytes | None = None
        headers: dict[str, str] = {}
        if json_body is not None:
            content = _encode_json(json_body)
            headers["Content-Type"] = "application/json"
        attempts_made = 0
        while True:
            attempts_made += 1
            retry_after: float | None = None
            try:
                response: httpx.Response = self._http.request(
                    method,
                    path,
                    params=params,
                    content=content,
                    headers={**self._headers, **headers},
                )
            except httpx.TransportError as exc:
                error: SrpError = self._connection_error(method, path, exc, secrets)
                error.__cause__ = exc
            else:
                if response.is_success:
                    return response
                retry_after = parse_retry_after(
                    response.headers.get("Retry-After"), now=self._clock()
                )
                error = self._error_from_response(response, retry_after, secrets)
            delay = self.retry.delay_before_retry(
                method, error, attempts_made, retry_after, self._rand
            )
            if delay is None:
                raise error
            logger.warning(
                "SRP %s %s failed (%s), retry %d in %.2fs",
                method,
                path,
                error.code,
                attempts_made,
                delay,
                # `fields` is what srp_bundle.log's JsonFormatter adds to the entry.
                extra={
                    "fields": {
                        "srp_method": method,
                        "srp_path": path,
                        "srp_error": error.code,
                        "srp_status": error.status_code,
                        "attempt": attempts_made,
                        "delay_seconds": delay,
                    }
                },
            )
            self._sleep(delay)

    def _error_from_response(
        self, response: httpx.Response, retry_after: float | None, secrets: tuple[str, ...]
    ) -> SrpError:
        status = response.status_code
        body = self._redacted_body(response, secrets)
        message = self._redact(
            f"SRP answered {status} to {_describe(response.request)}: {_srp_message(body)}",
            secrets,
        )
        if status in (401, 403):
            return SrpAuthenticationError(message, status_code=status, body=body)
        if status == 404:
            return SrpNotFoundError(message, status_code=status, body=body)
        if status in (400, 422):
            return SrpValidationError(message, status_code=status, body=body)
        if status == 429:
            return SrpRateLimitedError(
                message, retry_after=retry_after, status_code=status, body=body
            )
        if status >= 500:
            return SrpServerError(message, status_code=status, body=body)
        return SrpError(message, status_code=status, body=body)

    def _connection_error(
        self, method: str, path: str, exc: httpx.TransportError, secrets: tuple[str, ...]
    ) -> SrpConnectionError:
        # Only these fail before a byte of the request is written; a read timeout, a reset
        # or a protocol error can happen after SRP received (and acted on) the request.
        never_sent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)
        if isinstance(exc, httpx.TimeoutException):
            what = f"no answer within {self.timeout:g}s"
        else:
            what = "connection failed"
        reached = "was not sent" if never_sent else "may have reached SRP"
        return SrpConnectionError(
            self._redact(
                f"SRP {method} {path}: {what} ({type(exc).__name__}: {exc}); the request {reached}",
                secrets,
            ),
            may_have_reached_srp=not never_sent,
        )

    def _redact(self, text: str, secrets: tuple[str, ...] = ()) -> str:
        # The key whatever its length; the rest by `redact`'s rules.
        return redact(text.replace(self._api_key, REDACTED), secrets)

    def _redacted_body(self, response: httpx.Response, secrets: tuple[str, ...]) -> Any:
        body = _body_of(response)
        if isinstance(body, str):
            body = body.replace(self._api_key, REDACTED)
        return redact_json(body, (self._api_key, *secrets))


def _encode_json(body: dict[str, Any]) -> bytes:
    try:
        return encode_json(body)
    except (TypeError, ValueError) as exc:
        raise InvalidMessageError(f"the task cannot be sent as JSON: {exc}") from None


def _describe(request: httpx.Request) -> str:
    # The path only: query strings and hosts add noise, and the key is never in either.
    return f"{request.method} {request.url.path}"


def _body_of(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text[:_MAX_MESSAGE_CHARS]


def _srp_message(body: Any) -> str:
    """SRP's own explanation: DRF-style `detail`, `message` or `error`, else the body itself."""
    if isinstance(body, dict):
        for key in ("detail", "message", "error"):
            if isinstance(body.get(key), str):
                return str(body[key])[:_MAX_MESSAGE_CHARS]
    if isinstance(body, str):
        return body.strip()[:_MAX_MESSAGE_CHARS] or "(empty body)"
    return json.dumps(body, ensure_ascii=False)[:_MAX_MESSAGE_CHARS]
