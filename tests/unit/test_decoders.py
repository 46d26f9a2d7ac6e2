"""Decoders accept the real payload shapes in tests/data/cloudevents."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from srp_bundle.errors import InvalidMessageError
from srp_bundle.render_requests import parse_render_request, request_id_hint
from srp_bundle.trigger_events import decode_pubsub, decode_storage_object

FIXTURES = Path(__file__).resolve().parents[1] / "data" / "cloudevents"
COLLECTION = "5b2f7a3e-8c1d-4e6f-9a0b-1c2d3e4f5a6b"


def _fixture(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


def test_message_published_data_with_duplicated_fields() -> None:
    message = decode_pubsub(_fixture("MessagePublishedData-duplicatedFields.json"))
    assert message.message_id == "message-id"
    assert message.data == b"\x01\x02\x03\x04"
    assert message.attributes == {}
    assert message.publish_time is not None and message.publish_time.year == 2021
    assert message.subscription == "projects/my-project/subscriptions/my-subscription"


def test_bare_pubsub_message_without_attributes() -> None:
    message = decode_pubsub(_fixture("PubsubMessage-simple.json"))
    assert message.message_id == "3103425958877813"
    assert message.data == b"Hello World!"


def test_snake_case_message_id_only() -> None:
    message = decode_pubsub({"message": {"message_id": "42", "data": ""}})
    assert message.message_id == "42"
    assert message.data == b""


@pytest.mark.parametrize(
    "data",
    [
        None,
        [],
        {"message": "x"},
        {"message": {"data": "QQ=="}},
        {"message": {"messageId": "1", "data": "%%%"}},
    ],
)
def test_undecodable_pubsub_data_is_rejected(data) -> None:
    with pytest.raises(InvalidMessageError):
        decode_pubsub(data)


def test_storage_object_with_numbers() -> None:
    obj = decode_storage_object(_fixture("StorageObjectData-complex.json"))
    assert (obj.bucket, obj.name, obj.generation, obj.size) == (
        "sample-bucket",
        "MyFile",
        96883251,
        0,
    )
    assert obj.content_type == "esse commodo"


def test_storage_object_from_fake_gcs_notification_with_strings() -> None:
    obj = decode_storage_object(_fixture("fake-gcs-server-finalize-notification.json")["data"])
    assert obj.generation == 1795737276079003
    assert obj.size == 1080993


def _request(**fields) -> bytes:
    return json.dumps({"collection_id": COLLECTION, "input_data": {"bg": "x"}, **fields}).encode()


def test_valid_request_defaults_to_the_message_id() -> None:
    request = parse_render_request(_request(priority=5, metadata={"token": 7}), "msg-9")
    assert request.request_id == "msg-9"
    assert request.priority == 5
    assert request.metadata == {"token": 7}


def test_producer_callbacks_in_every_seed_form() -> None:
    request = parse_render_request(
        _request(
            request_id="r-1",
            callback_urls=[
                "https://a.example.com/cb",
                {"url": "https://b.example.com/cb", "method": "post"},
            ],
        ),
        "m",
    )
    assert request.request_id == "r-1"
    assert len(request.callback_urls) == 2


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"not json", "not JSON"),
        (b"[1]", "JSON object"),
        (json.dumps({"input_data": {}}).encode(), "collection_id"),
        (_request(collection_id="nope"), "collection_id must be a UUID"),
        (json.dumps({"collection_id": COLLECTION, "input_data": []}).encode(), "input_data"),
        (_request(priority="high"), "priority"),
        (_request(request_id="a/b"), "request_id"),
        (_request(request_id="x" * 129), "request_id"),
        (_request(request_id="__id__"), "reserved"),
        (_request(callback_urls="https://a"), "callback_urls"),
        (_request(callback_urls=["ftp://a"]), "callback_urls"),
        (_request(metadata=[1]), "metadata"),
        (_request(inputdata={}), "unknown field"),
        (_request(input_data={"blob": "x" * 70_000}), "bytes"),
        (base64.b64decode("//79"), "not JSON"),
    ],
)
def test_each_class_of_invalid_request_says_why(data: bytes, reason: str) -> None:
    with pytest.raises(InvalidMessageError, match=reason):
        parse_render_request(data, "msg-1")


def test_request_id_hint_of_an_invalid_message() -> None:
    assert request_id_hint(_request(request_id="r-7", priority="x"), "m") == "r-7"
    assert request_id_hint(b"garbage", "m") == "m"
    assert request_id_hint(_request(request_id="bad/id"), "m") == "m"
