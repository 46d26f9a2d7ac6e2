"""Producer callback_urls: only public https endpoints, POST/PUT, few and well-formed."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from srp_bundle import callback_policy
from srp_bundle.callback_policy import (
    MAX_PRODUCER_CALLBACKS,
    CallbackPolicy,
    check_producer_callbacks,
)
from srp_bundle.errors import CallbackRefusedError, InvalidMessageError
from srp_bundle.render_requests import parse_render_request
from srp_bundle.srp_models import CallbackTarget

COLLECTION = "3f1c9a52-7d4e-4b8a-9c1e-5a2b7d6e8f01"


def _check(entries: list[Any], *, local: bool = False, forward: bool = True) -> None:
    callbacks = [
        entry
        if isinstance(entry, str)
        else CallbackTarget(
            url=entry["url"],
            method=entry.get("method"),
            headers=entry.get("headers"),
            data=entry.get("data"),
            extra={k: v for k, v in entry.items() if k not in ("url", "method", "headers", "data")},
        )
        for entry in entries
    ]
    check_producer_callbacks(callbacks, CallbackPolicy(allow_local_http=local, forward=forward))


@pytest.mark.parametrize(
    "entry",
    [
        "https://hooks.studio.example.com/render-done",
        "https://api.studio.io:8443/cb?token=abc&x=1",
        "HTTPS://Hooks.Studio.IO/cb",
        "https://xn--bcher-kva.de/cb",  # an IDN, in its ASCII form
        "https://example.com./cb",  # a fully qualified name
        "https://hooks.studio.co.uk/cb",  # a registrable name under a two-label suffix
        "https://render-hook-abc123-ew.a.run.app/cb",  # under a Public Suffix List private entry
        "https://europe-west1-studio.cloudfunctions.net/render-done",
        "https://hooks.studio.dev/cb",
        {"url": "https://hooks.studio.io/cb", "method": "POST"},
        {"url": "https://hooks.studio.io/cb", "method": "put", "data": {"k": [1, 2]}},
        {"url": "https://hooks.studio.io/cb", "headers": {"Authorization": "Bearer x.y-z"}},
    ],
)
def test_public_https_endpoints_pass(entry: Any) -> None:
    _check([entry])


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        # scheme
        ("http://hooks.studio.io/cb", "must be an https URL"),
        ("ftp://hooks.studio.io/cb", "must be an https URL"),
        ("gopher://hooks.studio.io/cb", "must be an https URL"),
        ("https:hooks.studio.io/cb", "must name a host"),
        # IP literals, every spelling
        ("https://169.254.169.254/computeMetadata/v1/", "IP address literal"),
        ("https://10.0.0.8/cb", "IP address literal"),
        ("https://127.0.0.1/cb", "IP address literal"),
        ("https://8.8.8.8/cb", "IP address literal"),
        ("https://2130706433/cb", "IP address literal"),
        ("https://0x7f000001/cb", "numeric top-level label"),
        ("https://0x7f.0.0.1/cb", "numeric top-level label"),
        ("https://127.1/cb", "IP address literal"),
        ("https://[::1]/cb", "IP address literal"),
        ("https://[fd00:ec2::254]/cb", "IP address literal"),
        ("https://[::ffff:169.254.169.254]/cb", "IP address literal"),
        # loopback, link-local, private and internal names
        ("https://localhost/cb", "loopback name"),
        ("https://LOCALHOST./cb", "loopback name"),
        ("https://api.localhost/cb", "loopback name"),
        ("https://metadata.google.internal/computeMetadata/v1/", "internal name"),
        ("https://metadata/computeMetadata/v1/", "single-label"),
        ("https://printer.local/cb", "internal name"),
        ("https://db.corp/cb", "internal name"),
        ("https://nas.home.arpa/cb", "not a public endpoint (.arpa"),
        ("https://1.0.0.10.in-addr.arpa/cb", "not a public endpoint (.arpa"),
        ("https://router.lan/cb", "internal name"),
        ("https://svc.cluster.internal./cb", "internal name"),
        # names under no top-level domain of the Public Suffix List (ICANN section)
        ("https://redis.svc/cb", "internal name (.svc is not a top-level domain"),
        ("https://api.default.svc.cluster.local/cb", "internal name (.local"),
        ("https://hooks.test/cb", "internal name (.test"),
        ("https://hooks.invalid/cb", "internal name (.invalid"),
        ("https://hooks.studio.example/cb", "internal name (.example"),
        ("https://hooks.studio.alt/cb", "internal name (.alt"),
        ("https://hooks.studio.zz/cb", "internal name (.zz"),
        # delegated suffixes that are still not public endpoints
        ("https://redis.prod/cb", "not a public endpoint (.prod"),
        ("https://studio2x7hbbjzsgm5a.onion/cb", "not a public endpoint (.onion"),
        ("https://co.uk/cb", "a public suffix, not a registrable name"),
        ("https://studio.ck/cb", "a public suffix, not a registrable name"),  # *.ck
        # public names that resolve to the address they spell
        ("https://169.254.169.254.nip.io/computeMetadata/v1/", "address its name spells"),
        ("https://10-0-0-8.sslip.io/cb", "address its name spells (sslip.io)"),
        ("https://hooks.lvh.me/cb", "address its name spells (lvh.me)"),
        # parser differentials and malformed hosts
        ("https://user:pw@hooks.studio.io/cb", "must name a host"),
        ("https://hooks.studio.io@169.254.169.254/", "must name a host"),
        ("https://169.254.169.254\\@hooks.studio.io/", "backslashes"),
        ("https://hooks.studio.io /cb", "without spaces"),
        ("https://hooks.studio.io/cb\r\nHost: internal", "printable ASCII"),
        ("https://h\u043e\u043eks.studio.io/cb", "printable ASCII"),  # Cyrillic o's
        ("https://hooks..studio.io/cb", "not a valid DNS name"),
        ("https://-hooks.studio.io/cb", "not a valid DNS name"),
        ("https://hooks_studio.io/cb", "must name a host"),
        ("https://%31%32%37.0.0.1/cb", "must name a host"),  # percent-encoded host
        ("https://hooks.studio.io:0/cb", "invalid port"),
        ("https://hooks.studio.io:99999/cb", "invalid port"),
        ("https://hooks.studio.io:80:80/cb", "must name a host"),
        ("https://" + "a" * 2100 + ".io/", "longer than 2048"),
        # methods
        ({"url": "https://hooks.studio.io/cb", "method": "GET"}, "POST or PUT"),
        ({"url": "https://hooks.studio.io/cb", "method": "DELETE"}, "POST or PUT"),
        ({"url": "https://hooks.studio.io/cb", "method": "CONNECT"}, "POST or PUT"),
        # keys SRP would receive untouched
        ({"url": "https://hooks.studio.io/cb", "proxy": "http://10.0.0.1"}, "may only have"),
        # headers
        ({"url": "https://hooks.studio.io/cb", "headers": {"X Bad": "v"}}, "header name"),
        ({"url": "https://hooks.studio.io/cb", "headers": {"X\r\nA": "v"}}, "header name"),
        ({"url": "https://hooks.studio.io/cb", "headers": {"X-" + "a" * 80: "v"}}, "header name"),
        ({"url": "https://hooks.studio.io/cb", "headers": {"Host": "10.0.0.1"}}, "may not be set"),
        (
            {"url": "https://hooks.studio.io/cb", "headers": {"transfer-encoding": "chunked"}},
            "may not be set",
        ),
        ({"url": "https://hooks.studio.io/cb", "headers": {"X-A": "v\r\nHost: x"}}, "no CR"),
        ({"url": "https://hooks.studio.io/cb", "headers": {"X-A": "\x00"}}, "no CR"),
        ({"url": "https://hooks.studio.io/cb", "headers": {"X-A": "é"}}, "printable ASCII"),
        # headers that unlock cloud metadata services, or claim a client address
        *[
            ({"url": "https://hooks.studio.io/cb", "headers": {name: value}}, "metadata")
            for name, value in [
                ("Metadata-Flavor", "Google"),
                ("metadata-flavor", "ibm"),
                ("X-Google-Metadata-Request", "True"),
                ("Metadata", "true"),
                ("X-aws-ec2-metadata-token", "AQAEAN..."),
                ("X-aws-ec2-metadata-token-ttl-seconds", "21600"),
                ("X-aliyun-ecs-metadata-token-ttl-seconds", "600"),
                ("Authorization", "Bearer Oracle"),
                ("X-Forwarded-For", "127.0.0.1"),
                ("X-Forwarded-Host", "metadata.google.internal"),
                ("Forwarded", "for=127.0.0.1"),
                ("X-Real-IP", "10.0.0.1"),
            ]
        ],
        ({"url": "https://hooks.studio.io/cb", "headers": {"X-A": "v" * 1025}}, "at most 1024"),
        (
            {"url": "https://hooks.studio.io/cb", "headers": {f"X-{i}": "v" for i in range(17)}},
            "at most 16 headers",
        ),
    ],
)
def test_each_refused_callback_says_why(entry: Any, reason: str) -> None:
    with pytest.raises(CallbackRefusedError, match=re.escape(reason)) as refused:
        _check(["https://ok.studio.io/cb", entry])
    assert "callback_urls[1]" in str(refused.value)
    assert refused.value.code == "callback_refused"


def test_only_a_few_entries_are_allowed() -> None:
    _check([f"https://h{i}.studio.io/cb" for i in range(MAX_PRODUCER_CALLBACKS)])
    with pytest.raises(CallbackRefusedError, match=f"at most {MAX_PRODUCER_CALLBACKS}"):
        _check([f"https://h{i}.studio.io/cb" for i in range(MAX_PRODUCER_CALLBACKS + 1)])


@pytest.mark.parametrize(
    "entry",
    [
        "http://127.0.0.1:9/producer",
        "http://localhost:8080/producer",
        "http://[::1]:8080/producer",
        "https://127.0.0.2/producer",
        {"url": "http://127.0.0.1:9/producer-b", "method": "post"},
    ],
)
def test_local_development_allows_http_and_loopback_only(entry: Any) -> None:
    _check([entry], local=True)
    with pytest.raises(CallbackRefusedError):
        _check([entry], local=False)


@pytest.mark.parametrize(
    "entry",
    [
        "http://169.254.169.254/computeMetadata/v1/",
        "http://10.0.0.8/cb",
        "http://metadata.google.internal/",
        "http://[fe80::1]/cb",
        "file:///etc/passwd",
    ],
)
def test_local_development_still_refuses_everything_else(entry: Any) -> None:
    with pytest.raises(CallbackRefusedError):
        _check([entry], local=True)


def test_a_render_request_with_a_refused_callback_is_invalid_with_the_reason() -> None:
    data = json.dumps(
        {
            "collection_id": COLLECTION,
            "input_data": {},
            "callback_urls": ["http://169.254.169.254/computeMetadata/v1/"],
        }
    ).encode()
    with pytest.raises(InvalidMessageError, match=r"callback_urls\[0\] must be an https URL"):
        parse_render_request(data, "m")
    with pytest.raises(InvalidMessageError, match="IP address literal"):
        parse_render_request(data, "m", callback_policy=CallbackPolicy(allow_local_http=True))


def test_ordinary_credentials_and_look_alike_names_are_not_metadata_headers() -> None:
    _check(
        [
            {
                "url": "https://hooks.studio.io/cb",
                "headers": {
                    "Authorization": "Bearer oracle-of-delphi-7f3a",
                    "X-Render-Metadata": "token-7",
                    "X-Studio-Key": "k-123",
                },
            }
        ]
    )


def test_with_forwarding_off_any_producer_callback_is_refused_saying_what_to_do() -> None:
    _check([], forward=False)  # nothing to forward: fine
    with pytest.raises(CallbackRefusedError, match="FORWARD_PRODUCER_CALLBACKS=false") as refused:
        _check(["https://hooks.studio.io/cb"], forward=False)
    assert "render-events topic" in str(refused.value)
    data = json.dumps(
        {"collection_id": COLLECTION, "input_data": {}, "callback_urls": ["https://a.studio.io/"]}
    ).encode()
    with pytest.raises(CallbackRefusedError, match="FORWARD_PRODUCER_CALLBACKS"):
        parse_render_request(data, "m", callback_policy=CallbackPolicy(forward=False))


def test_the_public_suffix_list_is_read_from_the_wheel_without_any_network(monkeypatch) -> None:
    import socket

    def no_network(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the Public Suffix List must never be fetched")

    for name in ("socket", "create_connection", "getaddrinfo"):
        monkeypatch.setattr(socket, name, no_network)
    callback_policy._icann_suffixes.cache_clear()
    _check(["https://hooks.studio.co.uk/cb"])
    with pytest.raises(CallbackRefusedError, match=r"\.svc"):
        _check(["https://redis.svc/cb"])
