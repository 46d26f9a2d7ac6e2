"""Typed shapes of what we send to SRP and what SRP sends back (see the seed's Task API).

Parsing is strict about the types of the fields we know (a wrong type raises
`InvalidMessageError` naming the field) and lenient about everything else: unknown
fields are kept in `extra`, never rejected, because SRP may add fields at any time.

Over 300 lines: every shape SRP sends or takes, and their strict parsers, in one module.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlparse

from srp_bundle.errors import InvalidMessageError

JsonObject = dict[str, Any]


@dataclass(frozen=True)
class CallbackTarget:
    """The seed's dict form of a callback: SRP calls `url` with `method`, `headers`, `data`."""

    url: str
    method: str | None = None
    headers: dict[str, str] | None = None
    data: JsonObject | None = None
    # Keys a producer added that we do not know; passed to SRP untouched.
    extra: JsonObject = field(default_factory=dict)

    def to_json(self) -> JsonObject:
        """The dict SRP expects, keys in the seed's order, unset keys left out."""
        body: JsonObject = {"url": self.url}
        if self.method is not None:
            body["method"] = self.method
        if self.headers is not None:
            body["headers"] = dict(self.headers)
        if self.data is not None:
            body["data"] = dict(self.data)
        for key, value in self.extra.items():
            body.setdefault(key, value)
        return body


CallbackUrl = str | CallbackTarget


def callback_url_to_json(callback: CallbackUrl) -> str | JsonObject:
    """One `callback_urls` entry as SRP expects it: a plain URL string or the dict form."""
    return callback if isinstance(callback, str) else callback.to_json()


@dataclass(frozen=True)
class RawJson:
    """The text of a JSON object, sent exactly as given (a producer's input_data)."""

    text: str

    def __post_init__(self) -> None:
        try:
            value = json.loads(self.text, parse_constant=_refuse_constant)
        except (TypeError, ValueError) as error:
            raise InvalidMessageError(f"input_data is not JSON: {error}") from None
        if not isinstance(value, dict):
            raise InvalidMessageError(f"input_data must be a JSON object, got {_kind(value)}")


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def encode_json(body: JsonObject) -> bytes:
    """Compact UTF-8 JSON, every `RawJson` inside written exactly as its text.

    Raises TypeError/ValueError for what JSON cannot carry (NaN, lone surrogates, objects).
    """
    raw: dict[str, str] = {}

    def placeholder(value: object) -> str:
        # A RawJson goes in as a unique string, replaced by its exact text afterwards.
        if not isinstance(value, RawJson):
            raise TypeError(f"{type(value).__name__} is not JSON")
        marker = f"\0raw-{uuid.uuid4().hex}"
        raw[json.dumps(marker)] = value.text
        return marker

    text = json.dumps(
        body, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=placeholder
    )
    for marker, value in raw.items():
        text = text.replace(marker, value, 1)
    return text.encode()


@dataclass(frozen=True)
class SubmitRequest:
    """The body of `POST /api/v1/tasks`."""

    collection_id: str
    input_data: JsonObject | RawJson
    callback_urls: tuple[CallbackUrl, ...] = ()
    priority: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.collection_id, str) or not self.collection_id.strip():
            raise InvalidMessageError("collection_id must be a non-empty string")
        if not isinstance(self.input_data, dict | RawJson):
            raise InvalidMessageError(
                f"input_data must be a JSON object, got {_kind(self.input_data)}"
            )
        if self.priority is not None and (
            isinstance(self.priority, bool) or not isinstance(self.priority, int)
        ):
            raise InvalidMessageError(f"priority must be an integer, got {_kind(self.priority)}")
        for index, callback in enumerate(self.callback_urls):
            if not isinstance(callback, str | CallbackTarget):
                raise InvalidMessageError(
                    f"callback_urls[{index}] must be a URL or a CallbackTarget, "
                    f"got {_kind(callback)}"
                )

    def to_json(self) -> JsonObject:
        """The JSON body; `render_options` only carries what was set, like the seed's examples."""
        body: JsonObject = {"collection_id": self.collection_id, "input_data": self.input_data}
        render_options: JsonObject = {}
        if self.callback_urls:
            render_options["callback_urls"] = [callback_url_to_json(c) for c in self.callback_urls]
        if self.priority is not None:
            render_options["priority"] = self.priority
        if render_options:
            body["render_options"] = render_options
        return body


@dataclass(frozen=True)
class SrpPlugin:
    """The render plugin of a collection (`demo`, a Blender scene, ...)."""

    id: int | None = None
    label: str | None = None
    name: str | None = None
    extra: JsonObject = field(default_factory=dict)


@dataclass(frozen=True)
class SrpCollection:
    """The collection a task renders for, as SRP describes it."""

    name: str | None = None
    label: str | None = None
    id: int | None = None
    enabled: bool | None = None
    tags: tuple[str, ...] = ()
    plugin: SrpPlugin | None = None
    uid: str | None = None
    options: JsonObject = field(default_factory=dict)
    extra: JsonObject = field(default_factory=dict)


@dataclass(frozen=True)
class SrpTaskOptions:
    """The task's render options as SRP echoes them."""

    priority: int | None = None
    callback_urls: tuple[CallbackUrl, ...] = ()
    extra: JsonObject = field(default_factory=dict)


@dataclass(frozen=True)
class SrpUser:
    """Who created the task (the owner of the API key)."""

    id: int | None = None
    name: str | None = None
    extra: JsonObject = field(default_factory=dict)


@dataclass(frozen=True)
class SrpTask:
    """A task as `GET /api/v1/tasks?id=` returns it; `status` is SRP's, verbatim."""

    id: str
    status: str
    collection: SrpCollection | None = None
    creation_date: datetime | None = None
    enabled: bool | None = None
    input_data: JsonObject = field(default_factory=dict)
    options: SrpTaskOptions = field(default_factory=SrpTaskOptions)
    created_by: SrpUser | None = None
    tags: tuple[str, ...] = ()
    jobs: tuple[int, ...] = ()
    # The task's files, if SRP's answer lists them (the seed's GET does not).
    output_files: tuple[str, ...] | None = None
    extra: JsonObject = field(default_factory=dict)


@dataclass(frozen=True)
class SrpCallback:
    """A web hook call from SRP; `extra` holds the fields merged in from the callback's `data`."""

    status: str
    task_id: str
    timestamp: datetime
    # Present only when `status` is `done`; paths are relative to the renders bucket.
    output_files: tuple[str, ...] | None = None
    extra: JsonObject = field(default_factory=dict)


@dataclass(frozen=True)
class AssetUpload:
    """SRP's answer about a collection's asset archive: its id and where and how to PUT it.

    `get_asset_upload_url` and `create_asset` both answer this shape; `upload_url` is a
    signed URL that accepts exactly `content_type` and expires.
    """

    id: str
    upload_url: str
    content_type: str
    extra: JsonObject = field(default_factory=dict)


def parse_task(payload: object) -> SrpTask:
    """Read a task object from SRP's JSON; raise `InvalidMessageError` on a wrong type."""
    fields = _Fields(payload, "task")
    collection = fields.optional_object("collection")
    options = fields.optional_object("options")
    created_by = fields.optional_object("created_by")
    output_files = fields.get("output_files")
    return SrpTask(
        id=fields.required_text("id"),
        status=fields.required_text("status"),
        collection=None if collection is None else _parse_collection(collection, "task.collection"),
        creation_date=fields.optional_timestamp("creation_date"),
        enabled=fields.optional_boolean("enabled"),
        input_data=fields.optional_object("input_data") or {},
        options=SrpTaskOptions() if options is None else _parse_options(options, "task.options"),
        created_by=None if created_by is None else _parse_user(created_by, "task.created_by"),
        tags=fields.text_list("tags"),
        jobs=fields.integer_list("jobs"),
        output_files=None if output_files is None else fields.text_list("output_files"),
        extra=fields.unknown(),
    )


def parse_asset_upload(payload: object) -> AssetUpload:
    """Read `{"upload_url", "content_type", "id"}`; raise `InvalidMessageError` if malformed."""
    fields = _Fields(payload, "asset")
    upload = AssetUpload(
        id=fields.required_text("id"),
        upload_url=fields.required_text("upload_url"),
        content_type=fields.required_text("content_type"),
        extra=fields.unknown(),
    )
    _check_url(upload.upload_url, "asset.upload_url")
    return upload


def parse_callback(payload: object) -> SrpCallback:
    """Read an SRP web hook body; raise `InvalidMessageError` with the reason if malformed."""
    fields = _Fields(payload, "callback")
    output_files = fields.get("output_files")
    return SrpCallback(
        status=fields.required_text("status"),
        task_id=fields.required_text("task_id"),
        timestamp=fields.required_timestamp("timestamp"),
        output_files=None if output_files is None else fields.text_list("output_files"),
        extra=fields.unknown(),
    )


def parse_callback_urls(value: object, where: str = "callback_urls") -> tuple[CallbackUrl, ...]:
    """Read `callback_urls` in any of the seed's forms (URL strings and/or dicts)."""
    if value is None:
        return ()
    if not isinstance(value, list):
        raise InvalidMessageError(f"{where} must be a list, got {_kind(value)}")
    return tuple(_parse_callback_url(item, f"{where}[{i}]") for i, item in enumerate(value))


def parse_callback_target(value: object, where: str = "callback") -> CallbackTarget:
    """Read one callback in the seed's dict form `{url, method, headers, data}`."""
    fields = _Fields(value, where)
    url = fields.required_text("url")
    _check_url(url, f"{where}.url")
    headers = fields.optional_object("headers")
    if headers is not None:
        for name, header_value in headers.items():
            if not isinstance(header_value, str):
                raise InvalidMessageError(
                    f"{where}.headers.{name} must be a string, got {_kind(header_value)}"
                )
    return CallbackTarget(
        url=url,
        method=fields.optional_text("method"),
        headers=headers,
        data=fields.optional_object("data"),
        extra=fields.unknown(),
    )


def _parse_callback_url(value: object, where: str) -> CallbackUrl:
    if isinstance(value, str):
        _check_url(value, where)
        return value
    if isinstance(value, dict):
        return parse_callback_target(value, where)
    raise InvalidMessageError(f"{where} must be a URL string or an object, got {_kind(value)}")


def _parse_collection(payload: JsonObject, where: str) -> SrpCollection:
    fields = _Fields(payload, where)
    plugin = fields.optional_object("plugin")
    return SrpCollection(
        name=fields.optional_text("name"),
        label=fields.optional_text("label"),
        id=fields.optional_integer("id"),
        enabled=fields.optional_boolean("enabled"),
        tags=fields.text_list("tags"),
        plugin=None if plugin is None else _parse_plugin(plugin, f"{where}.plugin"),
        uid=fields.optional_text("uid"),
        options=fields.optional_object("options") or {},
        extra=fields.unknown(),
    )


def _parse_plugin(payload: JsonObject, where: str) -> SrpPlugin:
    fields = _Fields(payload, where)
    return SrpPlugin(
        id=fields.optional_integer("id"),
        label=fields.optional_text("label"),
        name=fields.optional_text("name"),
        extra=fields.unknown(),
    )


def _parse_options(payload: JsonObject, where: str) -> SrpTaskOptions:
    fields = _Fields(payload, where)
    return SrpTaskOptions(
        priority=fields.optional_integer("priority"),
        callback_urls=parse_callback_urls(fields.get("callback_urls"), f"{where}.callback_urls"),
        extra=fields.unknown(),
    )


def _parse_user(payload: JsonObject, where: str) -> SrpUser:
    fields = _Fields(payload, where)
    return SrpUser(
        id=fields.optional_integer("id"),
        name=fields.optional_text("name"),
        extra=fields.unknown(),
    )


class _Fields:
    """Typed reads from one JSON object; remembers which keys were read to keep the rest."""

    def __init__(self, payload: object, where: str) -> None:
        if not isinstance(payload, dict):
            raise InvalidMessageError(f"{where} must be a JSON object, got {_kind(payload)}")
        self._payload: Mapping[str, Any] = payload
        self._where = where
        self._read: set[str] = set()

    def get(self, name: str) -> Any:
        self._read.add(name)
        return self._payload.get(name)

    def unknown(self) -> JsonObject:
        return {k: v for k, v in self._payload.items() if k not in self._read}

    def required_text(self, name: str) -> str:
        value = self.optional_text(name)
        if not value:
            raise InvalidMessageError(f"{self._where}.{name} is missing or empty")
        return value

    def optional_text(self, name: str) -> str | None:
        value = self.get(name)
        if value is None or isinstance(value, str):
            return value
        raise self._wrong_type(name, "a string", value)

    def optional_integer(self, name: str) -> int | None:
        value = self.get(name)
        if value is None:
            return None
        # bool is an int in Python, but `true` is not an id or a priority.
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise self._wrong_type(name, "an integer", value)

    def optional_boolean(self, name: str) -> bool | None:
        value = self.get(name)
        if value is None or isinstance(value, bool):
            return value
        raise self._wrong_type(name, "true or false", value)

    def optional_object(self, name: str) -> JsonObject | None:
        value = self.get(name)
        if value is None or isinstance(value, dict):
            return value
        raise self._wrong_type(name, "a JSON object", value)

    def text_list(self, name: str) -> tuple[str, ...]:
        items = self._list(name)
        for index, item in enumerate(items):
            if not isinstance(item, str):
                raise self._wrong_type(f"{name}[{index}]", "a string", item)
        return tuple(items)

    def integer_list(self, name: str) -> tuple[int, ...]:
        items = self._list(name)
        for index, item in enumerate(items):
            if not isinstance(item, int) or isinstance(item, bool):
                raise self._wrong_type(f"{name}[{index}]", "an integer", item)
        return tuple(items)

    def required_timestamp(self, name: str) -> datetime:
        value = self.optional_timestamp(name)
        if value is None:
            raise InvalidMessageError(f"{self._where}.{name} is missing")
        return value

    def optional_timestamp(self, name: str) -> datetime | None:
        text = self.optional_text(name)
        if text is None:
            return None
        try:
            # Python 3.11 reads SRP's forms: `...31.263Z` and `...38.662062Z`.
            when = datetime.fromisoformat(text)
        except ValueError:
            raise InvalidMessageError(
                f"{self._where}.{name} must be an ISO 8601 timestamp, got {text[:64]!r}"
            ) from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return when.astimezone(UTC)

    def _list(self, name: str) -> Sequence[Any]:
        value = self.get(name)
        if value is None:
            return ()
        if isinstance(value, list):
            return value
        raise self._wrong_type(name, "a list", value)

    def _wrong_type(self, name: str, expected: str, value: object) -> InvalidMessageError:
        return InvalidMessageError(f"{self._where}.{name} must be {expected}, got {_kind(value)}")


def _check_url(url: str, where: str) -> None:
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise InvalidMessageError(f"{where} must be an http(s) URL, got {url[:200]!r}")


def _kind(value: object) -> str:
    """The JSON name of a value's type: messages name the type, never echo the value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
