"""What a producer may ask SRP to call back: public https endpoints, nothing else.

SRP calls every entry of `callback_urls` from its own network, so an unchecked entry
would make SRP our relay to `http://169.254.169.254/` or any internal name. The URL
grammar is deliberately narrower than what URL parsers accept (no userinfo, no
backslash, no non-ASCII): where two parsers could disagree on the host, the URL is
refused. A host must be a registrable name under a top-level domain of the ICANN section
of the Public Suffix List (the copy shipped in the `publicsuffixlist` wheel, never
fetched), so `.svc`, `.test`, `.internal` and every other name only a private resolver
knows are refused, and headers that unlock cloud metadata services are refused too.

What this cannot see: a public name that resolves to a private address (DNS is SRP's,
and answers can change between our check and SRP's call), or a name SRP's resolver
completes with a search domain. Those are SRP's network policy to enforce; a deployment
that wants no producer URL at SRP at all sets FORWARD_PRODUCER_CALLBACKS=false.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from publicsuffixlist import PublicSuffixList

from srp_bundle.errors import CallbackRefusedError
from srp_bundle.srp_models import CallbackTarget, CallbackUrl

if TYPE_CHECKING:
    from srp_bundle.settings import Settings

MAX_PRODUCER_CALLBACKS = 5
MAX_URL_LENGTH = 2048
MAX_HEADERS = 16
MAX_HEADER_NAME_LENGTH = 64
MAX_HEADER_VALUE_LENGTH = 1024
ALLOWED_METHODS = ("post", "put")
_KNOWN_KEYS = ("url", "method", "headers", "data")
# Printable ASCII, no space and no backslash (which some parsers read as "/").
_URL_CHARACTERS = re.compile(r"[\x21-\x5b\x5d-\x7e]+")
_NETLOC = re.compile(r"(?P<host>[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::(?P<port>[0-9]{1,5}))?")
_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")
# A top-level label starts with a letter: "0x7f", "1" or "017" would be read as IPv4.
_TOP_LEVEL_LABEL = re.compile(r"[a-z][a-z0-9-]*")
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # an RFC 9110 token
_HEADER_VALUE = re.compile(r"[\t\x20-\x7e]*")  # no CR, LF, NUL or non-ASCII
# Headers the HTTP client itself must decide; a producer setting them smuggles requests.
_RESERVED_HEADERS = frozenset(
    {
        "connection",
        "content-length",
        "expect",
        "host",
        "keep-alive",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
# Headers that unlock a cloud instance metadata service (GCP, Azure, AWS IMDSv2, Alibaba,
# IBM) or claim the request comes from a client address (proxies and internal services
# trust them). A public name that resolves to a metadata address answers only with them.
_METADATA_HEADERS = frozenset(
    {
        "metadata-flavor",  # GCP (Google), IBM Cloud (ibm)
        "x-google-metadata-request",  # GCP's legacy metadata header
        "metadata",  # Azure IMDS (Metadata: true)
        "forwarded",
        "x-real-ip",
        "x-client-ip",
        "x-originating-ip",
    }
)
_METADATA_HEADER_PREFIXES = (
    "x-aws-ec2-metadata-token",  # IMDSv2: the token and the PUT that makes one (-ttl-seconds)
    "x-aliyun-ecs-metadata-token",  # Alibaba ECS hardened mode, same pair
    "x-forwarded-",
)
# Oracle Cloud's IMDSv2 needs `Authorization: Bearer Oracle`; any other value is a
# producer's own credential.
_METADATA_AUTHORIZATION = "bearer oracle"
# Delegated suffixes that are not public endpoints all the same.
_SPECIAL_USE_SUFFIXES = {
    "arpa": "infrastructure names: reverse lookups, home.arpa networks (RFC 8375)",
    "onion": "Tor names, never resolved by DNS (RFC 7686)",
    # Delegated to Google's registry, not open for registration as far as we know, while
    # `service.prod` is what a Kubernetes resolver completes to a service of namespace prod.
    "prod": "a Kubernetes-style service.namespace name",
}
# Public DNS services whose names resolve to the address they spell (10.0.0.1.nip.io) or to
# loopback (lvh.me): an SSRF classic that a name check can refuse.
_ADDRESS_SPELLING_DOMAINS = (
    "nip.io",
    "sslip.io",
    "xip.io",
    "traefik.me",
    "localtest.me",
    "lvh.me",
    "vcap.me",
)


@functools.cache
def _icann_suffixes() -> PublicSuffixList:
    """The ICANN section of the shipped list, parsed once (about 50 ms) on first use.

    Private-section entries (github.io, run.app, ...) are left out: they say which names
    their operator hands to customers, not whether a name is public, and every one of them
    sits under an ICANN suffix, so they could only refuse the platforms' own bare hosts.
    """
    return PublicSuffixList(only_icann=True, accept_unknown=False)


@dataclass(frozen=True)
class CallbackPolicy:
    """What this deployment lets producers do with `callback_urls`.

    `allow_local_http` (ALLOW_LOCAL_HTTP_CALLBACKS, local development only) also accepts
    http:// and loopback hosts; `forward` (FORWARD_PRODUCER_CALLBACKS) false refuses every
    request that has producer callbacks: SRP is then never given a producer URL.
    """

    allow_local_http: bool = False
    forward: bool = True

    @classmethod
    def from_settings(cls, settings: Settings) -> CallbackPolicy:
        """The policy the settings describe."""
        return cls(
            allow_local_http=settings.allow_local_http_callbacks,
            forward=settings.forward_producer_callbacks,
        )


# Production's defaults: https only, producer callbacks forwarded.
DEFAULT_CALLBACK_POLICY = CallbackPolicy()


def check_producer_callbacks(
    callbacks: Sequence[CallbackUrl], policy: CallbackPolicy = DEFAULT_CALLBACK_POLICY
) -> None:
    """Raise `CallbackRefusedError` naming the first entry SRP must not be asked to call."""
    if callbacks and not policy.forward:
        raise CallbackRefusedError(
            "this deployment does not pass producer callback_urls to SRP "
            "(FORWARD_PRODUCER_CALLBACKS=false): leave them out and subscribe to the "
            "render-events topic instead"
        )
    allow_local_http = policy.allow_local_http
    if len(callbacks) > MAX_PRODUCER_CALLBACKS:
        raise CallbackRefusedError(
            f"at most {MAX_PRODUCER_CALLBACKS} callback_urls are allowed, got {len(callbacks)}"
        )
    for index, callback in enumerate(callbacks):
        where = f"callback_urls[{index}]"
        if isinstance(callback, str):
            _check_url(callback, where, allow_local_http)
            continue
        _check_url(callback.url, f"{where}.url", allow_local_http)
        _check_target(callback, where)


def _check_target(callback: CallbackTarget, where: str) -> None:
    if callback.extra:
        raise CallbackRefusedError(
            f"{where} may only have the keys {', '.join(_KNOWN_KEYS)}; "
            f"got {', '.join(sorted(callback.extra))[:200]}"
        )
    if callback.method is not None and callback.method.lower() not in ALLOWED_METHODS:
        raise CallbackRefusedError(
            f"{where}.method must be POST or PUT, got {callback.method[:20]!r}"
        )
    headers = callback.headers or {}
    if len(headers) > MAX_HEADERS:
        raise CallbackRefusedError(f"{where}.headers may hold at most {MAX_HEADERS} headers")
    for name, value in headers.items():
        if len(name) > MAX_HEADER_NAME_LENGTH or not _HEADER_NAME.fullmatch(name):
            raise CallbackRefusedError(
                f"{where}.headers: {name[:MAX_HEADER_NAME_LENGTH]!r} is not a valid header name "
                f"(at most {MAX_HEADER_NAME_LENGTH} token characters)"
            )
        if name.lower() in _RESERVED_HEADERS:
            raise CallbackRefusedError(f"{where}.headers: {name!r} may not be set by a producer")
        if _is_metadata_header(name, value):
            raise CallbackRefusedError(
                f"{where}.headers: {name!r} is a cloud metadata or client-address header "
                "and may not be set by a producer"
            )
        if len(value) > MAX_HEADER_VALUE_LENGTH or not _HEADER_VALUE.fullmatch(value):
            raise CallbackRefusedError(
                f"{where}.headers.{name} must be at most {MAX_HEADER_VALUE_LENGTH} printable "
                "ASCII characters (no CR, LF or NUL)"
            )


def _check_url(url: str, where: str, allow_local_http: bool) -> None:
    shown = repr(url[:120])
    if len(url) > MAX_URL_LENGTH:
        raise CallbackRefusedError(f"{where} is longer than {MAX_URL_LENGTH} characters")
    if not _URL_CHARACTERS.fullmatch(url):
        raise CallbackRefusedError(
            f"{where} must be printable ASCII without spaces or backslashes, got {shown}"
        )
    parts = urlsplit(url)
    schemes = ("https", "http") if allow_local_http else ("https",)
    if parts.scheme.lower() not in schemes:
        raise CallbackRefusedError(f"{where} must be an https URL, got {shown}")
    netloc = _NETLOC.fullmatch(parts.netloc)
    if netloc is None:
        raise CallbackRefusedError(
            f"{where} must name a host (no user:password@, valid port), got {shown}"
        )
    refusal = _host_refusal(netloc.group("host").lower(), allow_local_http)
    if refusal is not None:
        raise CallbackRefusedError(f"{where} host {refusal}: {shown}")
    port = netloc.group("port")
    if port is not None and not 0 < int(port) < 65536:
        raise CallbackRefusedError(f"{where} has an invalid port: {shown}")


def _host_refusal(host: str, allow_loopback: bool) -> str | None:
    """Why SRP must not call `host` (lowercase), or None if it is a public name."""
    name = host[:-1] if host.endswith(".") else host
    if host.startswith("[") or all(label.isdigit() for label in name.split(".")):
        if allow_loopback and _is_loopback_address(host.strip("[]")):
            return None
        return "is an IP address literal (use a public DNS name)"
    labels = name.split(".")
    if len(name) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        return "is not a valid DNS name"
    if not _TOP_LEVEL_LABEL.fullmatch(labels[-1]):
        return "is not a public DNS name (a numeric top-level label reads as an IP address)"
    if name == "localhost" or name.endswith(".localhost"):
        return None if allow_loopback else "is a loopback name"
    if len(labels) < 2:
        return "is a single-label (internal) name"
    if labels[-1] in _SPECIAL_USE_SUFFIXES:
        return f"is not a public endpoint (.{labels[-1]}: {_SPECIAL_USE_SUFFIXES[labels[-1]]})"
    suffixes = _icann_suffixes()
    if suffixes.publicsuffix(name, accept_unknown=False) is None:
        return (
            f"is an internal name (.{labels[-1]} is not a top-level domain of the "
            "Public Suffix List)"
        )
    registrable = suffixes.privatesuffix(name, accept_unknown=False)
    if registrable is None:
        return "is a public suffix, not a registrable name"
    if registrable in _ADDRESS_SPELLING_DOMAINS:
        return f"resolves to the address its name spells ({registrable})"
    return None


def _is_metadata_header(name: str, value: str) -> bool:
    lowered = name.lower()
    if lowered == "authorization":
        return value.strip().lower() == _METADATA_AUTHORIZATION
    return lowered in _METADATA_HEADERS or lowered.startswith(_METADATA_HEADER_PREFIXES)


def _is_loopback_address(text: str) -> bool:
    try:
        return ipaddress.ip_address(text).is_loopback
    except ValueError:
        return False
