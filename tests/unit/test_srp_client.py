"""SrpClient against a fake SRP (httpx.MockTransport, named routes) and real loopback sockets."""

from __future__ import annotations

import copy
import email.utils
import json
import logging
import re
import socket
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

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
)
from srp_bundle.srp_client import (
    DEFAULT_RETRY,
    CallbackTarget,
    RetryPolicy,
    SrpClient,
    parse_callback,
    parse_callback_urls,
    parse_task,
)

API_KEY = "sk-test-7f3a9c1e5b2d4f60a8e1"
BASE_URL = "https://srp.test"
COLLECTION_ID = "3f0e5b5c-8d44-4a6a-9a53-0c1f8f2f4b11"
TASK_ID = "9b2d7c3e-1a4f-4e8b-b6d5-2f7a1c9e0d44"
INPUT_DATA = {"bg": "RareFlare3.png", "pants": "stepper", "shoe_color": "#ff0000"}

# The seed's GET response example, with its placeholders filled in.
SEED_TASK: dict[str, Any] = {
    "id": TASK_ID,
    "collection": {
        "name": "collection_name",
        "label": "Collection Name",
        "id": 1,
        "enabled": True,
        "tags": ["test"],
        "plugin": {"id": 1, "label": "Demo", "name": "demo"},
        "uid": COLLECTION_ID,
        "options": {"width": 1024},
    },
    "creation_date": "2023-05-12T18:27:38.662062Z",
    "status": "done",
    "enabled": True,
    "input_data": INPUT_DATA,
    "options": {"priority": 50, "callback_urls": ["https://domain.com/api/v1/render/callback"]},
    "created_by": {"id": 1, "name": "demo"},
    "tags": ["demo"],
    "jobs": [1234],
}

# The seed's three `render_options` examples, verbatim.
SEED_ONE_URL = '{"callback_urls": ["http://domain.com/api/callback/"]}'
SEED_TWO_URLS = """{"callback_urls": [
    "http://domain1.com/api/callback/",
    "http://domain2.com/api/callback/"
]}"""
SEED_DICT_FORM = """{"callback_urls": [{
    "url":"http://domain.com/api/callback/",
    "method": "post",
    "headers": {"custom": "header"},
    "data": {"extra": "data"}
}]}"""


# --- a fake SRP with named routes ------------------------------------------------------

Reply = httpx.Response | type[httpx.TransportError]


class Route:
    """One endpoint of the fake: scripted replies (the last one repeats) and the requests seen."""

    def __init__(self, method: str, path: str, replies: list[Reply]) -> None:
        self.method = method
        self.path = path
        self.replies = replies
        self.requests: list[httpx.Request] = []

    @property
    def call_count(self) -> int:
        return len(self.requests)

    def answer(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        reply = self.replies[min(len(self.requests), len(self.replies)) - 1]
        if isinstance(reply, httpx.Response):
            return reply
        raise reply(f"simulated {reply.__name__}", request=request)


class FakeSrp:
    """`httpx.MockTransport` handler: routes by method and path, fails loudly on anything else."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}

    def __getitem__(self, name: str) -> Route:
        return self.routes[name]

    def route(self, name: str, method: str, path: str, *replies: Reply) -> Route:
        self.routes[name] = Route(method, path, list(replies))
        return self.routes[name]

    def handle(self, request: httpx.Request) -> httpx.Response:
        for route in self.routes.values():
            if route.method == request.method and route.path == request.url.path:
                return route.answer(request)
        raise AssertionError(f"unexpected request {request.method} {request.url}")


def task_reply(status_code: int = 200, **changes: Any) -> httpx.Response:
    return httpx.Response(status_code, json={**SEED_TASK, **changes})


@pytest.fixture
def fake_srp() -> FakeSrp:
    return FakeSrp()


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def make_client(fake_srp: FakeSrp, sleeps: list[float]) -> Iterator[Callable[..., SrpClient]]:
    clients: list[SrpClient] = []

    def make(**options: Any) -> SrpClient:
        options.setdefault("base_url", BASE_URL)
        options.setdefault("transport", httpx.MockTransport(fake_srp.handle))
        options.setdefault("sleep", sleeps.append)
        client = SrpClient(API_KEY, **options)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


# --- requests as SRP expects them ------------------------------------------------------


def test_submit_sends_bearer_key_and_the_seed_body(fake_srp: FakeSrp, make_client: Any) -> None:
    submit = fake_srp.route("submit", "POST", "/api/v1/tasks", task_reply(201, status="new"))

    task = make_client().submit_task(COLLECTION_ID, INPUT_DATA)

    (request,) = submit.requests
    assert request.headers["Authorization"] == f"Bearer {API_KEY}"
    assert request.headers["Content-Type"] == "application/json"
    assert json.loads(request.content) == {"collection_id": COLLECTION_ID, "input_data": INPUT_DATA}
    assert (task.id, task.status) == (TASK_ID, "new")


@pytest.mark.parametrize("seed_text", [SEED_ONE_URL, SEED_TWO_URLS, SEED_DICT_FORM])
def test_every_callback_form_is_serialised_like_the_seed(
    fake_srp: FakeSrp, make_client: Any, seed_text: str
) -> None:
    submit = fake_srp.route("submit", "POST", "/api/v1/tasks", task_reply(201))
    seed_render_options = json.loads(seed_text)
    typed = [
        CallbackTarget(url=c["url"], method=c["method"], headers=c["headers"], data=c["data"])
        if isinstance(c, dict)
        else c
        for c in seed_render_options["callback_urls"]
    ]

    make_client().submit_task(COLLECTION_ID, INPUT_DATA, callback_urls=typed)

    sent = json.loads(submit.requests[0].content)["render_options"]
    # Same keys in the same order, same values: compare the canonical JSON text.
    assert json.dumps(sent) == json.dumps(seed_render_options)


def test_priority_and_mixed_callback_forms_go_in_render_options(
    fake_srp: FakeSrp, make_client: Any
) -> None:
    submit = fake_srp.route("submit", "POST", "/api/v1/tasks", task_reply(201))
    producer_callbacks = parse_callback_urls(
        json.loads(SEED_TWO_URLS)["callback_urls"] + json.loads(SEED_DICT_FORM)["callback_urls"]
    )
    ours = CallbackTarget(url="https://hooks.example/cb/req-1", method="post", headers={"x": "t"})

    make_client().submit_task(
        COLLECTION_ID, INPUT_DATA, callback_urls=[*producer_callbacks, ours], priority=70
    )

    assert json.loads(submit.requests[0].content)["render_options"] == {
        "callback_urls": [
            "http://domain1.com/api/callback/",
            "http://domain2.com/api/callback/",
            json.loads(SEED_DICT_FORM)["callback_urls"][0],
            {"url": "https://hooks.example/cb/req-1", "method": "post", "headers": {"x": "t"}},
        ],
        "priority": 70,
    }


def test_unknown_keys_of_a_producer_callback_are_passed_on() -> None:
    (target,) = parse_callback_urls([{"url": "https://a.example/cb", "timeout": 5}])

    assert isinstance(target, CallbackTarget)
    assert target.to_json() == {"url": "https://a.example/cb", "timeout": 5}


@pytest.mark.parametrize(
    ("callback_urls", "reason"),
    [
        ("https://a.example/cb", "callback_urls must be a list"),
        ([42], "callback_urls[0] must be a URL string or an object"),
        (["ftp://a.example/cb"], "callback_urls[0] must be an http(s) URL"),
        ([{"method": "post"}], "callback_urls[0].url is missing"),
        ([{"url": "https://a.example", "headers": {"n": 1}}], "callback_urls[0].headers.n"),
        ([{"url": "https://a.example", "data": []}], "callback_urls[0].data must be a JSON object"),
    ],
)
def test_malformed_callback_urls_are_rejected_with_the_reason(
    callback_urls: object, reason: str
) -> None:
    with pytest.raises(InvalidMessageError, match=pytest_escape(reason)):
        parse_callback_urls(callback_urls)


def test_input_that_is_not_json_is_rejected_before_sending(
    fake_srp: FakeSrp, make_client: Any
) -> None:
    submit = fake_srp.route("submit", "POST", "/api/v1/tasks", task_reply(201))

    with pytest.raises(InvalidMessageError, match="cannot be sent as JSON"):
        make_client().submit_task(COLLECTION_ID, {"scale": float("nan")})
    with pytest.raises(InvalidMessageError, match="priority must be an integer"):
        make_client().submit_task(COLLECTION_ID, INPUT_DATA, priority=True)
    assert submit.call_count == 0


# --- responses and callbacks -----------------------------------------------------------


def test_get_task_asks_by_id_and_reads_the_seed_response(
    fake_srp: FakeSrp, make_client: Any
) -> None:
    get = fake_srp.route("get", "GET", "/api/v1/tasks", task_reply())

    task = make_client().get_task(TASK_ID)

    assert get.requests[0].url.params["id"] == TASK_ID
    assert get.requests[0].headers["Authorization"] == f"Bearer {API_KEY}"
    assert task.status == "done"
    assert task.creation_date == datetime(2023, 5, 12, 18, 27, 38, 662062, tzinfo=UTC)
    assert task.collection is not None and task.collection.plugin is not None
    assert (task.collection.uid, task.collection.plugin.name) == (COLLECTION_ID, "demo")
    assert task.collection.options == {"width": 1024}
    assert task.options.priority == 50
    assert task.options.callback_urls == ("https://domain.com/api/v1/render/callback",)
    assert task.created_by is not None and task.created_by.name == "demo"
    assert (task.tags, task.jobs, task.input_data) == (("demo",), (1234,), INPUT_DATA)
    assert task.extra == {}


def test_unknown_fields_are_kept_at_every_level() -> None:
    payload = copy.deepcopy(SEED_TASK)
    payload["progress"] = 0.5
    payload["collection"]["owner"] = "studio"
    payload["collection"]["plugin"]["version"] = "2.1"
    payload["options"]["render_engine"] = "cycles"
    payload["created_by"]["email"] = "demo@example.com"

    task = parse_task(payload)

    assert task.extra == {"progress": 0.5}
    assert task.collection is not None and task.collection.extra == {"owner": "studio"}
    assert task.collection.plugin is not None and task.collection.plugin.extra == {"version": "2.1"}
    assert task.options.extra == {"render_engine": "cycles"}
    assert task.created_by is not None and task.created_by.extra == {"email": "demo@example.com"}


def test_a_minimal_task_parses_with_defaults() -> None:
    task = parse_task({"id": TASK_ID, "status": "new", "collection": None, "jobs": None})

    assert (task.id, task.status, task.collection, task.jobs) == (TASK_ID, "new", None, ())


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda t: t.pop("id"), "task.id is missing"),
        (lambda t: t.update(status=3), "task.status must be a string, got a number"),
        (lambda t: t.update(collection=[]), "task.collection must be a JSON object, got a list"),
        (lambda t: t["collection"].update(id="1"), "task.collection.id must be an integer"),
        (lambda t: t["collection"]["plugin"].update(id=True), "task.collection.plugin.id"),
        (lambda t: t.update(creation_date="yesterday"), "task.creation_date must be an ISO 8601"),
        (lambda t: t.update(jobs=["1234"]), "task.jobs[0] must be an integer, got a string"),
        (lambda t: t.update(tags="demo"), "task.tags must be a list"),
        (lambda t: t["options"].update(callback_urls=[1]), "task.options.callback_urls[0]"),
        (lambda t: t.update(enabled="yes"), "task.enabled must be true or false"),
    ],
)
def test_wrong_types_in_a_task_raise_a_readable_reason(
    change: Callable[[dict[str, Any]], object], reason: str
) -> None:
    payload = copy.deepcopy(SEED_TASK)
    change(payload)

    with pytest.raises(InvalidMessageError, match=pytest_escape(reason)):
        parse_task(payload)


def test_parse_callback_reads_the_seed_example_and_keeps_merged_data() -> None:
    callback = parse_callback(
        {
            "output_files": [f"render/collection_name/{TASK_ID}/render.png"],
            "status": "done",
            "task_id": TASK_ID,
            "timestamp": "2023-05-22T11:40:31.263Z",
            "extra": "data",
        }
    )

    assert callback.status == "done"
    assert callback.task_id == TASK_ID
    assert callback.timestamp == datetime(2023, 5, 22, 11, 40, 31, 263000, tzinfo=UTC)
    assert callback.output_files == (f"render/collection_name/{TASK_ID}/render.png",)
    assert callback.extra == {"extra": "data"}


def test_parse_callback_without_output_files() -> None:
    callback = parse_callback(
        {"status": "processing", "task_id": TASK_ID, "timestamp": "2023-05-22T11:40:31+02:00"}
    )

    assert callback.output_files is None
    assert callback.timestamp == datetime(2023, 5, 22, 9, 40, 31, tzinfo=UTC)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ([], "callback must be a JSON object, got a list"),
        ({"task_id": TASK_ID, "timestamp": "2023-05-22T11:40:31Z"}, "callback.status is missing"),
        ({"status": "done", "task_id": 7, "timestamp": "x"}, "callback.task_id must be a string"),
        ({"status": "done", "task_id": TASK_ID}, "callback.timestamp is missing"),
        (
            {"status": "done", "task_id": TASK_ID, "timestamp": "2023-05-22", "output_files": "a"},
            "callback.output_files must be a list",
        ),
        (
            {"status": "done", "task_id": TASK_ID, "timestamp": "2023-05-22", "output_files": [1]},
            "callback.output_files[0] must be a string",
        ),
    ],
)
def test_malformed_callbacks_raise_a_readable_reason(payload: object, reason: str) -> None:
    with pytest.raises(InvalidMessageError, match=pytest_escape(reason)):
        parse_callback(payload)


# --- typed errors ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status_code", "error_class"),
    [
        (400, SrpValidationError),
        (401, SrpAuthenticationError),
        (403, SrpAuthenticationError),
        (404, SrpNotFoundError),
        (409, SrpError),
        (422, SrpValidationError),
        (429, SrpRateLimitedError),
        (500, SrpServerError),
        (502, SrpServerError),
        (503, SrpServerError),
    ],
)
def test_each_status_raises_its_typed_error_with_srps_message(
    fake_srp: FakeSrp, make_client: Any, status_code: int, error_class: type[SrpError]
) -> None:
    body = {"detail": f"srp says no ({status_code})"}
    fake_srp.route("get", "GET", "/api/v1/tasks", httpx.Response(status_code, json=body))

    with pytest.raises(SrpError) as raised:
        make_client(retry=RetryPolicy(max_attempts=1)).get_task(TASK_ID)

    assert type(raised.value) is error_class
    assert raised.value.status_code == status_code
    assert raised.value.body == body
    assert f"srp says no ({status_code})" in str(raised.value)
    assert raised.value.transient == (status_code == 429 or status_code >= 500)


def test_validation_error_without_detail_carries_the_whole_body(
    fake_srp: FakeSrp, make_client: Any
) -> None:
    drf_errors = {"collection_id": ["“nope” is not a valid UUID."]}
    fake_srp.route("submit", "POST", "/api/v1/tasks", httpx.Response(400, json=drf_errors))

    with pytest.raises(SrpValidationError, match="is not a valid UUID"):
        make_client().submit_task("nope", INPUT_DATA)


def test_rate_limit_error_carries_retry_after(fake_srp: FakeSrp, make_client: Any) -> None:
    fake_srp.route(
        "submit", "POST", "/api/v1/tasks", httpx.Response(429, headers={"Retry-After": "12"})
    )

    with pytest.raises(SrpRateLimitedError) as raised:
        make_client().submit_task(COLLECTION_ID, INPUT_DATA)

    assert raised.value.retry_after == 12.0


def test_a_success_with_a_body_that_is_not_a_task_is_an_srp_error(
    fake_srp: FakeSrp, make_client: Any
) -> None:
    fake_srp.route("submit", "POST", "/api/v1/tasks", httpx.Response(201, text="<html>ok</html>"))

    with pytest.raises(SrpError) as raised:
        make_client().submit_task(COLLECTION_ID, INPUT_DATA)

    assert type(raised.value) is SrpError
    assert raised.value.status_code == 201
    assert "unexpected body" in str(raised.value)


# --- retries: GET ----------------------------------------------------------------------


def test_get_is_retried_on_503_then_succeeds(
    fake_srp: FakeSrp, make_client: Any, sleeps: list[float]
) -> None:
    get = fake_srp.route(
        "get", "GET", "/api/v1/tasks", httpx.Response(503), httpx.Response(503), task_reply()
    )

    task = make_client().get_task(TASK_ID)

    assert task.id == TASK_ID
    assert get.call_count == 3
    # Full jitter below a ceiling that doubles: [0, 0.5] then [0, 1.0].
    assert len(sleeps) == 2
    assert 0 <= sleeps[0] <= 0.5 and 0 <= sleeps[1] <= 1.0


@pytest.mark.parametrize(
    "failure", [httpx.ReadTimeout, httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError]
)
def test_get_is_retried_after_a_connection_failure(
    fake_srp: FakeSrp, make_client: Any, failure: type[httpx.TransportError]
) -> None:
    get = fake_srp.route("get", "GET", "/api/v1/tasks", failure, task_reply())

    assert make_client().get_task(TASK_ID).id == TASK_ID
    assert get.call_count == 2


def test_get_gives_up_after_max_attempts(
    fake_srp: FakeSrp, make_client: Any, sleeps: list[float]
) -> None:
    get = fake_srp.route("get", "GET", "/api/v1/tasks", httpx.Response(502))

    with pytest.raises(SrpServerError):
        make_client(retry=RetryPolicy(max_attempts=4)).get_task(TASK_ID)

    assert get.call_count == 4
    assert len(sleeps) == 3


def test_get_is_not_retried_on_a_permanent_error(fake_srp: FakeSrp, make_client: Any) -> None:
    get = fake_srp.route("get", "GET", "/api/v1/tasks", httpx.Response(404), task_reply())

    with pytest.raises(SrpNotFoundError):
        make_client().get_task(TASK_ID)

    assert get.call_count == 1


def test_get_honours_retry_after_in_seconds(
    fake_srp: FakeSrp, make_client: Any, sleeps: list[float]
) -> None:
    fake_srp.route(
        "get",
        "GET",
        "/api/v1/tasks",
        httpx.Response(429, headers={"Retry-After": "7"}),
        httpx.Response(503, headers={"Retry-After": "3"}),
        task_reply(),
    )

    make_client().get_task(TASK_ID)

    assert sleeps == [7.0, 3.0]


def test_get_honours_retry_after_as_an_http_date(
    fake_srp: FakeSrp, make_client: Any, sleeps: list[float]
) -> None:
    now = datetime(2026, 11, 30, 12, 0, 0, tzinfo=UTC)
    http_date = email.utils.format_datetime(now + timedelta(seconds=30), usegmt=True)
    fake_srp.route(
        "get",
        "GET",
        "/api/v1/tasks",
        httpx.Response(429, headers={"Retry-After": http_date}),
        task_reply(),
    )

    make_client(retry=RetryPolicy(max_retry_after_seconds=60), clock=lambda: now).get_task(TASK_ID)

    assert sleeps == [30.0]


def test_a_retry_after_beyond_the_cap_is_raised_not_waited_for(
    fake_srp: FakeSrp, make_client: Any, sleeps: list[float]
) -> None:
    get = fake_srp.route(
        "get", "GET", "/api/v1/tasks", httpx.Response(429, headers={"Retry-After": "3600"})
    )

    with pytest.raises(SrpRateLimitedError) as raised:
        make_client().get_task(TASK_ID)

    assert raised.value.retry_after == 3600.0
    assert get.call_count == 1 and sleeps == []


def test_backoff_is_full_jitter_below_a_doubling_capped_ceiling() -> None:
    policy = RetryPolicy(initial_backoff_seconds=0.5, max_backoff_seconds=5.0)

    ceilings = [policy.backoff_seconds(n, rand=lambda: 1.0) for n in range(1, 7)]

    assert ceilings == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]
    assert policy.backoff_seconds(3, rand=lambda: 0.0) == 0.0
    assert policy.backoff_seconds(3, rand=lambda: 0.25) == 0.5


# --- retries: POST ---------------------------------------------------------------------


def test_post_is_not_retried_after_a_read_timeout(
    fake_srp: FakeSrp, make_client: Any, sleeps: list[float]
) -> None:
    submit = fake_srp.route("submit", "POST", "/api/v1/tasks", httpx.ReadTimeout, task_reply(201))

    with pytest.raises(SrpConnectionError) as raised:
        make_client().submit_task(COLLECTION_ID, INPUT_DATA)

    assert raised.value.may_have_reached_srp is True
    assert raised.value.transient is True
    assert submit.call_count == 1 and sleeps == []


@pytest.mark.parametrize(
    ("failure", "may_have_reached_srp"),
    [
        (httpx.Response(503), True),
        (httpx.Response(500), True),
        (httpx.Response(502), True),
        (httpx.Response(504), True),
        (httpx.Response(429, headers={"Retry-After": "1"}), False),
        (httpx.RemoteProtocolError, True),
        (httpx.ReadError, True),
        (httpx.WriteTimeout, True),
    ],
    ids=["503", "500", "502", "504", "429", "reset", "read-error", "write-timeout"],
)
def test_a_failed_post_is_not_retried_and_says_whether_it_may_have_reached_srp(
    fake_srp: FakeSrp,
    make_client: Any,
    sleeps: list[float],
    failure: Reply,
    may_have_reached_srp: bool,
) -> None:
    submit = fake_srp.route("submit", "POST", "/api/v1/tasks", failure, task_reply(201))

    with pytest.raises(SrpError) as raised:
        make_client().submit_task(COLLECTION_ID, INPUT_DATA)

    assert raised.value.transient is True
    # A 5xx may come from a proxy after SRP created the task; only a 4xx means nothing was.
    assert raised.value.may_have_reached_srp is may_have_reached_srp
    assert submit.call_count == 1 and sleeps == []


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_a_4xx_answer_to_a_post_created_nothing(
    fake_srp: FakeSrp, make_client: Any, status: int
) -> None:
    fake_srp.route("submit", "POST", "/api/v1/tasks", httpx.Response(status, json={}))

    with pytest.raises(SrpError) as raised:
        make_client().submit_task(COLLECTION_ID, INPUT_DATA)

    assert raised.value.may_have_reached_srp is False


@pytest.mark.parametrize("failure", [httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout])
def test_post_is_retried_when_it_was_certainly_not_sent(
    fake_srp: FakeSrp, make_client: Any, failure: type[httpx.TransportError]
) -> None:
    submit = fake_srp.route("submit", "POST", "/api/v1/tasks", failure, task_reply(201))

    assert make_client().submit_task(COLLECTION_ID, INPUT_DATA).id == TASK_ID
    assert submit.call_count == 2


# --- real loopback sockets -------------------------------------------------------------


class LoopbackSrp:
    """A real HTTP server on 127.0.0.1 answering POST /api/v1/tasks; optionally never answers."""

    def __init__(self, port: int = 0, *, hang: bool = False) -> None:
        self.requests: list[tuple[str, str, bytes]] = []
        self.release = threading.Event()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                fake.requests.append((self.command, self.path, body))
                if hang:
                    fake.release.wait(10)
                    return
                reply = json.dumps({**SEED_TASK, "status": "new"}).encode()
                self.send_response(201)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def closed_loopback_port() -> int:
    """A port nothing listens on: connecting to it is refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_post_is_retried_after_a_refused_connection_on_a_real_socket() -> None:
    port = closed_loopback_port()
    servers: list[LoopbackSrp] = []
    # The "sleep" between attempts is when SRP comes up: no timing involved.
    client = SrpClient(
        API_KEY,
        base_url=f"http://127.0.0.1:{port}",
        sleep=lambda _seconds: servers.append(LoopbackSrp(port)),
    )
    try:
        task = client.submit_task(COLLECTION_ID, INPUT_DATA, priority=5)
    finally:
        client.close()
        for server in servers:
            server.stop()

    assert task.id == TASK_ID
    assert len(servers) == 1, "exactly one retry after the refused attempt"
    ((method, path, body),) = servers[0].requests
    assert (method, path) == ("POST", "/api/v1/tasks")
    assert json.loads(body)["render_options"] == {"priority": 5}


def test_refused_every_time_raises_not_sent(sleeps: list[float]) -> None:
    client = SrpClient(
        API_KEY,
        base_url=f"http://127.0.0.1:{closed_loopback_port()}",
        sleep=sleeps.append,
    )
    with client, pytest.raises(SrpConnectionError) as raised:
        client.submit_task(COLLECTION_ID, INPUT_DATA)

    assert raised.value.may_have_reached_srp is False
    assert "was not sent" in str(raised.value)
    assert len(sleeps) == DEFAULT_RETRY.max_attempts - 1


def test_post_is_not_retried_after_a_real_read_timeout(sleeps: list[float]) -> None:
    server = LoopbackSrp(hang=True)
    client = SrpClient(API_KEY, base_url=server.url, timeout=0.3, sleep=sleeps.append)
    try:
        with pytest.raises(SrpConnectionError) as raised:
            client.submit_task(COLLECTION_ID, INPUT_DATA)
    finally:
        client.close()
        server.stop()

    assert raised.value.may_have_reached_srp is True
    assert len(server.requests) == 1 and sleeps == []


# --- the API key stays secret ----------------------------------------------------------


def test_the_api_key_never_appears_in_repr_errors_or_logs(
    fake_srp: FakeSrp, make_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    # An SRP that echoes the Authorization header back must not leak it through our messages.
    echo = {"detail": f"bad token Bearer {API_KEY}"}
    fake_srp.route("submit", "POST", "/api/v1/tasks", httpx.Response(401, json=echo))
    fake_srp.route("get", "GET", "/api/v1/tasks", httpx.Response(503), httpx.ReadTimeout)
    client = make_client(retry=RetryPolicy(max_attempts=3))

    messages = [repr(client), str(client)]
    calls: list[Callable[[], object]] = [
        lambda: client.submit_task(COLLECTION_ID, {}),
        lambda: client.get_task(TASK_ID),
    ]
    for call in calls:
        with pytest.raises(SrpError) as raised:
            call()
        messages += [str(raised.value), repr(raised.value)]

    refused = SrpClient(
        API_KEY, base_url=f"http://127.0.0.1:{closed_loopback_port()}", sleep=lambda _s: None
    )
    with refused, pytest.raises(SrpConnectionError) as raised:
        refused.submit_task(COLLECTION_ID, {})
    messages += [str(raised.value), repr(refused)]

    assert caplog.records, "retries are logged"
    messages += [record.getMessage() for record in caplog.records]
    messages += [repr(record.__dict__) for record in caplog.records]
    assert not [m for m in messages if API_KEY in m]
    assert "[redacted]" in messages[2]


def test_a_missing_key_or_bad_url_fails_at_construction() -> None:
    with pytest.raises(ConfigurationError, match="SRP_API_KEY"):
        SrpClient("  \n")
    with pytest.raises(ConfigurationError, match="SRP_API_URL"):
        SrpClient(API_KEY, base_url="srp.snark.art")


def test_a_trailing_newline_in_the_key_is_not_sent(fake_srp: FakeSrp, make_client: Any) -> None:
    get = fake_srp.route("get", "GET", "/api/v1/tasks", task_reply())
    with SrpClient(
        API_KEY + "\n", base_url=BASE_URL, transport=httpx.MockTransport(fake_srp.handle)
    ) as client:
        client.get_task(TASK_ID)

    assert get.requests[0].headers["Authorization"] == f"Bearer {API_KEY}"


def pytest_escape(text: str) -> str:
    """`pytest.raises(match=)` takes a regex; the reasons contain brackets and parentheses."""
    return re.escape(text)


# --- collection assets: get_asset_upload_url (GET) and create_asset (POST) -------------------

ASSET_ANSWER = {
    "upload_url": "https://storage.googleapis.com/srp-assets/a1.zip?X-Goog-Signature=abc",
    "content_type": "application/zip",
    "id": "a1",
}


def test_get_asset_upload_url_asks_by_collection_uid_and_reads_the_answer(
    fake_srp: FakeSrp, make_client: Any
) -> None:
    route = fake_srp.route(
        "url",
        "GET",
        "/api/v1/tasks/get_asset_upload_url/",
        httpx.Response(200, json={**ASSET_ANSWER, "expires": "later"}),
    )

    upload = make_client().get_asset_upload_url(COLLECTION_ID)

    assert upload.id == "a1" and upload.content_type == "application/zip"
    assert upload.upload_url == ASSET_ANSWER["upload_url"]
    assert upload.extra == {"expires": "later"}
    (request,) = route.requests
    assert request.url.params["collection_uid"] == COLLECTION_ID
    assert request.headers["Authorization"] == f"Bearer {API_KEY}"


def test_get_asset_upload_url_is_retried_on_503_like_every_get(
    fake_srp: FakeSrp, make_client: Any, sleeps: list[float]
) -> None:
    route = fake_srp.route(
        "url",
        "GET",
        "/api/v1/tasks/get_asset_upload_url/",
        httpx.Response(503, json={"detail": "busy"}),
        httpx.Response(200, json=ASSET_ANSWER),
    )

    assert make_client().get_asset_upload_url(COLLECTION_ID).id == "a1"
    assert route.call_count == 2 and len(sleeps) == 1


def test_create_asset_posts_the_id_and_is_not_retried_on_503(
    fake_srp: FakeSrp, make_client: Any, sleeps: list[float]
) -> None:
    route = fake_srp.route(
        "create", "POST", "/api/v1/tasks/create_asset/", httpx.Response(503, json={"detail": "x"})
    )

    with pytest.raises(SrpServerError):
        make_client().create_asset("a1")

    assert route.call_count == 1 and sleeps == []
    assert json.loads(route.requests[0].content) == {"id": "a1"}
    assert route.requests[0].headers["Content-Type"] == "application/json"


def test_create_asset_refused_raises_the_typed_error_with_srps_message(
    fake_srp: FakeSrp, make_client: Any
) -> None:
    fake_srp.route(
        "create",
        "POST",
        "/api/v1/tasks/create_asset/",
        httpx.Response(400, json={"detail": "the archive has not been uploaded"}),
    )

    with pytest.raises(SrpValidationError, match="has not been uploaded"):
        make_client().create_asset("a1")


@pytest.mark.parametrize(
    "body",
    [
        {"id": "a1", "content_type": "application/zip"},
        {**ASSET_ANSWER, "upload_url": "ftp://x/y"},
        ["not", "an", "object"],
    ],
    ids=["no-url", "not-http", "not-an-object"],
)
def test_an_asset_answer_of_the_wrong_shape_is_an_srp_error(
    fake_srp: FakeSrp, make_client: Any, body: Any
) -> None:
    fake_srp.route(
        "url", "GET", "/api/v1/tasks/get_asset_upload_url/", httpx.Response(200, json=body)
    )

    with pytest.raises(SrpError, match="unexpected body"):
        make_client().get_asset_upload_url(COLLECTION_ID)


def test_empty_asset_arguments_are_refused_before_sending(make_client: Any) -> None:
    client = make_client()
    with pytest.raises(InvalidMessageError):
        client.get_asset_upload_url(" ")
    with pytest.raises(InvalidMessageError):
        client.create_asset("")
