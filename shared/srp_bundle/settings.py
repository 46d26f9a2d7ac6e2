"""Configuration: the design's fixed environment variables, read once and validated.

Over 300 lines: every variable's parsing and check lives here, one place for all of them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlparse

from srp_bundle.errors import ConfigurationError

GOOGLE_CLOUD_PROJECT = "GOOGLE_CLOUD_PROJECT"
SRP_API_URL = "SRP_API_URL"
SRP_API_KEY = "SRP_API_KEY"
WEBHOOK_URL = "WEBHOOK_URL"
WEBHOOK_SECRET = "WEBHOOK_SECRET"
WEBHOOK_SECRET_PREVIOUS = "WEBHOOK_SECRET_PREVIOUS"
TASKS_COLLECTION = "TASKS_COLLECTION"
EVENTS_TOPIC = "EVENTS_TOPIC"
RENDERS_BUCKET = "RENDERS_BUCKET"
DERIVATIVES_BUCKET = "DERIVATIVES_BUCKET"
DERIVATIVE_SPECS = "DERIVATIVE_SPECS"
# Our own tuning knobs (the design leaves them open); each has a safe default.
MAX_REQUEST_AGE_SECONDS = "MAX_REQUEST_AGE_SECONDS"
CONFIRM_TERMINAL_STATUS = "CONFIRM_TERMINAL_STATUS"
STALE_AFTER_SECONDS = "STALE_AFTER_SECONDS"
RECONCILE_BUDGET = "RECONCILE_BUDGET"
SRP_TIMEOUT_SECONDS = "SRP_TIMEOUT_SECONDS"
AMBIGUOUS_SUBMIT_WAIT_SECONDS = "AMBIGUOUS_SUBMIT_WAIT_SECONDS"
RENDER_PATH_PATTERN = "RENDER_PATH_PATTERN"
MAX_SOURCE_PIXELS = "MAX_SOURCE_PIXELS"
MAX_SOURCE_BYTES = "MAX_SOURCE_BYTES"
MAX_MEDIA_SECONDS = "MAX_MEDIA_SECONDS"
MEDIA_TIMEOUT_SECONDS = "MEDIA_TIMEOUT_SECONDS"
MEDIA_MEMORY_BYTES = "MEDIA_MEMORY_BYTES"
MAX_ANIMATION_PIXELS = "MAX_ANIMATION_PIXELS"
# The function's own timeout, as deployed (Terraform passes it): MEDIA_TIMEOUT_SECONDS
# plus MEDIA_BUDGET_MARGIN_SECONDS must fit inside it.
FUNCTION_TIMEOUT_SECONDS = "FUNCTION_TIMEOUT_SECONDS"
RENDERED_DEADLINE_SECONDS = "RENDERED_DEADLINE_SECONDS"
WEBHOOK_SRP_LOOKUPS_PER_HOUR = "WEBHOOK_SRP_LOOKUPS_PER_HOUR"
# Local development only: also accept http:// and loopback hosts in producer callback_urls.
ALLOW_LOCAL_HTTP_CALLBACKS = "ALLOW_LOCAL_HTTP_CALLBACKS"
# false: producer callback_urls are never passed to SRP (requests carrying them are
# refused); producers subscribe to the render-events topic instead.
FORWARD_PRODUCER_CALLBACKS = "FORWARD_PRODUCER_CALLBACKS"

DEFAULT_SRP_API_URL = "https://srp.snark.art"
DEFAULT_TASKS_COLLECTION = "srp_tasks"
MIN_WEBHOOK_SECRET_LENGTH = 16
DEFAULT_DERIVATIVE_SPECS = "512:webp,256:webp,1024:png"
# Time one file's event needs besides the media work: download (up to MAX_SOURCE_BYTES),
# derivative uploads, Firestore and Pub/Sub.
MEDIA_BUDGET_MARGIN_SECONDS = 60
DEFAULT_MEDIA_TIMEOUT_SECONDS = 120
# Every file SRP writes into a task's folder: render/<COLLECTION_NAME>/<TASK_UUID>/<file>
# (render.png, render.mp4, scene.glb, ...), directly or up to 4 subfolders deep, as the
# callbacks' output_files may name them (render_paths.MAX_SUBFOLDERS).
DEFAULT_RENDER_PATH_PATTERN = (
    r"^render/(?P<collection_name>[^/]+)/(?P<task_id>[0-9A-Fa-f-]{36})/(?:[^/]+/){0,4}[^/]+$"
)

# What each deployed function cannot start without. Terraform's structural tests
# read this table, so a function and its deployment cannot drift apart.
REQUIRED_BY_FUNCTION: Mapping[str, tuple[str, ...]] = {
    "submit_task": (GOOGLE_CLOUD_PROJECT, SRP_API_KEY, WEBHOOK_URL, WEBHOOK_SECRET, EVENTS_TOPIC),
    # WEBHOOK_URL: an echoed callback proves a task is ours only if it is our URL;
    # RENDERS_BUCKET: a done request's files are listed from the task's folder.
    "ingest_webhook": (
        GOOGLE_CLOUD_PROJECT,
        SRP_API_KEY,
        WEBHOOK_URL,
        WEBHOOK_SECRET,
        EVENTS_TOPIC,
        RENDERS_BUCKET,
    ),
    "postprocess_render": (GOOGLE_CLOUD_PROJECT, RENDERS_BUCKET, DERIVATIVES_BUCKET, EVENTS_TOPIC),
    "reconcile_tasks": (
        GOOGLE_CLOUD_PROJECT,
        SRP_API_KEY,
        WEBHOOK_URL,
        WEBHOOK_SECRET,
        EVENTS_TOPIC,
    ),
    "record_dead_letter": (GOOGLE_CLOUD_PROJECT, EVENTS_TOPIC),
}

# Secrets reach production functions as Secret Manager secret environment variables only.
SECRET_VARIABLES = (SRP_API_KEY, WEBHOOK_SECRET, WEBHOOK_SECRET_PREVIOUS)

_DERIVATIVE_FORMATS = ("webp", "png", "jpeg", "avif")
_TOPIC_ID = re.compile(r"^[A-Za-z][\w.~+%-]{2,254}$")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True)
class DerivativeSpec:
    """One derivative to make: fit inside `size` x `size`, encoded as `image_format`."""

    size: int
    image_format: str


@dataclass(frozen=True)
class Settings:
    """Validated configuration of one function instance."""

    project_id: str
    srp_api_url: str = DEFAULT_SRP_API_URL
    srp_api_key: str | None = field(default=None, repr=False)
    webhook_url: str | None = None
    webhook_secret: str | None = field(default=None, repr=False)
    webhook_secret_previous: str | None = field(default=None, repr=False)
    tasks_collection: str = DEFAULT_TASKS_COLLECTION
    events_topic: str | None = None
    renders_bucket_name: str | None = None
    derivatives_bucket_name: str | None = None
    derivative_specs: tuple[DerivativeSpec, ...] = ()
    max_request_age_seconds: int = 24 * 3600
    confirm_terminal_status: bool = True
    stale_after_seconds: int = 15 * 60
    reconcile_budget: int = 500
    srp_timeout_seconds: float = 10.0
    # After a POST whose answer was lost, wait this long for SRP's callback to name the
    # task before submitting again (see README, "Exactly one SRP task per request").
    ambiguous_submit_wait_seconds: int = 300
    render_path_pattern: re.Pattern[str] = re.compile(DEFAULT_RENDER_PATH_PATTERN)
    max_source_pixels: int = 50_000_000
    max_source_bytes: int = 256 * 1024 * 1024
    # Video and audio: the longest render accepted. Every file: the one deadline shared by
    # all its tool runs and libvips work, and each ffmpeg/ffprobe child's address space.
    max_media_seconds: int = 600
    media_timeout_seconds: int = DEFAULT_MEDIA_TIMEOUT_SECONDS
    media_memory_bytes: int = 1024 * 1024 * 1024
    # An animated GIF/WebP: all its frames together (pages x width x height).
    max_animation_pixels: int = 500_000_000
    function_timeout_seconds: int | None = None
    # A request `rendered` this long without every output post-processed is re-driven
    # once by reconcile, then failed.
    rendered_deadline_seconds: int = 3600
    allow_local_http_callbacks: bool = False
    forward_producer_callbacks: bool = True
    # SRP look-ups the webhook makes for one request per hour (beyond: 429 to the caller).
    webhook_srp_lookups_per_hour: int = 30

    def require(self, value: str | None, variable: str) -> str:
        """Return a value that the caller cannot work without, naming the variable if unset."""
        if not value:
            raise ConfigurationError(f"{variable} is not set")
        return value


def parse_derivative_specs(text: str) -> tuple[DerivativeSpec, ...]:
    """Parse `512:webp,256:webp,1024:png` into derivative specs."""
    specs: list[DerivativeSpec] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        size_text, _, image_format = item.partition(":")
        image_format = image_format.strip().lower() or "webp"
        if image_format == "jpg":
            image_format = "jpeg"
        if not size_text.strip().isdigit() or not 16 <= int(size_text) <= 8192:
            raise ConfigurationError(
                f"{DERIVATIVE_SPECS}: size in {item!r} must be an integer between 16 and 8192"
            )
        if image_format not in _DERIVATIVE_FORMATS:
            raise ConfigurationError(
                f"{DERIVATIVE_SPECS}: format in {item!r} must be one of "
                + ", ".join(_DERIVATIVE_FORMATS)
            )
        spec = DerivativeSpec(int(size_text), image_format)
        if spec not in specs:
            specs.append(spec)
    if not specs:
        raise ConfigurationError(f"{DERIVATIVE_SPECS} lists no derivative")
    return tuple(specs)


def load_settings(
    function_name: str | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Read and validate the environment; fail with the variable's name if something is wrong.

    With `function_name`, every variable that function needs must be present.
    """
    env = os.environ if environ is None else environ

    def text(name: str) -> str | None:
        value = env.get(name, "").strip()
        return value or None

    if function_name is not None:
        if function_name not in REQUIRED_BY_FUNCTION:
            raise ConfigurationError(f"unknown function {function_name!r}")
        missing = [name for name in REQUIRED_BY_FUNCTION[function_name] if not text(name)]
        if missing:
            raise ConfigurationError(
                f"{function_name} cannot start: {', '.join(missing)} "
                f"{'is' if len(missing) == 1 else 'are'} not set"
            )

    project_id = text(GOOGLE_CLOUD_PROJECT)
    if project_id is None:
        raise ConfigurationError(f"{GOOGLE_CLOUD_PROJECT} is not set")

    srp_api_url = text(SRP_API_URL) or DEFAULT_SRP_API_URL
    _check_url(SRP_API_URL, srp_api_url)
    webhook_url = text(WEBHOOK_URL)
    if webhook_url is not None:
        _check_url(WEBHOOK_URL, webhook_url)

    events_topic = text(EVENTS_TOPIC)
    if events_topic is not None and not _TOPIC_ID.match(events_topic):
        raise ConfigurationError(f"{EVENTS_TOPIC} must be a Pub/Sub topic id, got {events_topic!r}")

    renders_bucket_name = text(RENDERS_BUCKET)
    derivatives_bucket_name = text(DERIVATIVES_BUCKET)

    webhook_secret = _secret(text, WEBHOOK_SECRET)
    webhook_secret_previous = _secret(text, WEBHOOK_SECRET_PREVIOUS)
    media_timeout_seconds, function_timeout_seconds = _media_budget(env)

    return Settings(
        project_id=project_id,
        srp_api_url=srp_api_url.rstrip("/"),
        srp_api_key=text(SRP_API_KEY),
        webhook_url=webhook_url,
        webhook_secret=webhook_secret,
        webhook_secret_previous=webhook_secret_previous,
        tasks_collection=text(TASKS_COLLECTION) or DEFAULT_TASKS_COLLECTION,
        events_topic=events_topic,
        renders_bucket_name=renders_bucket_name,
        derivatives_bucket_name=derivatives_bucket_name,
        derivative_specs=parse_derivative_specs(text(DERIVATIVE_SPECS) or DEFAULT_DERIVATIVE_SPECS),
        max_request_age_seconds=_positive_int(env, MAX_REQUEST_AGE_SECONDS, 24 * 3600),
        confirm_terminal_status=_boolean(env, CONFIRM_TERMINAL_STATUS, True),
        stale_after_seconds=_positive_int(env, STALE_AFTER_SECONDS, 15 * 60),
        reconcile_budget=_positive_int(env, RECONCILE_BUDGET, 500),
        srp_timeout_seconds=float(_positive_int(env, SRP_TIMEOUT_SECONDS, 10)),
        ambiguous_submit_wait_seconds=_positive_int(env, AMBIGUOUS_SUBMIT_WAIT_SECONDS, 300),
        render_path_pattern=_render_path_pattern(text(RENDER_PATH_PATTERN)),
        max_source_pixels=_positive_int(env, MAX_SOURCE_PIXELS, 50_000_000),
        max_source_bytes=_positive_int(env, MAX_SOURCE_BYTES, 256 * 1024 * 1024),
        max_media_seconds=_positive_int(env, MAX_MEDIA_SECONDS, 600),
        media_timeout_seconds=media_timeout_seconds,
        media_memory_bytes=_positive_int(env, MEDIA_MEMORY_BYTES, 1024 * 1024 * 1024),
        max_animation_pixels=_positive_int(env, MAX_ANIMATION_PIXELS, 500_000_000),
        function_timeout_seconds=function_timeout_seconds,
        rendered_deadline_seconds=_positive_int(env, RENDERED_DEADLINE_SECONDS, 3600),
        allow_local_http_callbacks=_boolean(env, ALLOW_LOCAL_HTTP_CALLBACKS, False),
        forward_producer_callbacks=_boolean(env, FORWARD_PRODUCER_CALLBACKS, True),
        webhook_srp_lookups_per_hour=_positive_int(env, WEBHOOK_SRP_LOOKUPS_PER_HOUR, 30),
    )


def _secret(text: Callable[[str], str | None], variable: str) -> str | None:
    """An HMAC key: unset, or long enough that guessing it is hopeless."""
    value = text(variable)
    if value is not None and len(value) < MIN_WEBHOOK_SECRET_LENGTH:
        raise ConfigurationError(
            f"{variable} must be at least {MIN_WEBHOOK_SECRET_LENGTH} characters long"
        )
    return value


def _media_budget(env: Mapping[str, str]) -> tuple[int, int | None]:
    """MEDIA_TIMEOUT_SECONDS, checked to fit inside FUNCTION_TIMEOUT_SECONDS when that is set.

    Otherwise the platform would kill a slow file's work first, and retry it as transient.
    """
    media_timeout = _positive_int(env, MEDIA_TIMEOUT_SECONDS, DEFAULT_MEDIA_TIMEOUT_SECONDS)
    function_timeout = None
    if env.get(FUNCTION_TIMEOUT_SECONDS, "").strip():
        function_timeout = _positive_int(env, FUNCTION_TIMEOUT_SECONDS, 1)
        if media_timeout + MEDIA_BUDGET_MARGIN_SECONDS > function_timeout:
            raise ConfigurationError(
                f"{MEDIA_TIMEOUT_SECONDS} ({media_timeout}) plus a margin of "
                f"{MEDIA_BUDGET_MARGIN_SECONDS} s must fit inside {FUNCTION_TIMEOUT_SECONDS} "
                f"({function_timeout})"
            )
    return media_timeout, function_timeout


def _render_path_pattern(value: str | None) -> re.Pattern[str]:
    try:
        pattern = re.compile(value or DEFAULT_RENDER_PATH_PATTERN)
    except re.error as error:
        raise ConfigurationError(f"{RENDER_PATH_PATTERN} is not a valid regex: {error}") from None
    if {"collection_name", "task_id"} - set(pattern.groupindex):
        raise ConfigurationError(
            f"{RENDER_PATH_PATTERN} must have named groups collection_name and task_id"
        )
    return pattern


def _check_url(variable: str, value: str) -> None:
    parsed = urlparse(value)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ConfigurationError(f"{variable} must be an http(s) URL, got {value!r}")


def _positive_int(env: Mapping[str, str], variable: str, default: int) -> int:
    raw = env.get(variable, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or int(raw) <= 0:
        raise ConfigurationError(f"{variable} must be a positive integer, got {raw!r}")
    return int(raw)


def _boolean(env: Mapping[str, str], variable: str, default: bool) -> bool:
    raw = env.get(variable, "").strip().lower()
    if not raw:
        return default
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ConfigurationError(f"{variable} must be true or false, got {raw!r}")
