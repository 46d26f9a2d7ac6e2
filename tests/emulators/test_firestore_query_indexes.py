"""The local Firestore refuses what production refuses: a query on a field Terraform exempts
from indexing, and one that needs a composite index Terraform does not declare."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from google.api_core import exceptions
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from local_stack.emulators import FirestoreEmulator

pytestmark = pytest.mark.integration


@pytest.fixture
def records(emulator_env, unique_name) -> Iterator[firestore.CollectionReference]:
    client = firestore.Client(project=emulator_env["GOOGLE_CLOUD_PROJECT"])
    collection = client.collection(unique_name("tasks"))
    for index, state in enumerate(["failed", "completed", "failed"]):
        collection.document(f"r{index}").set(
            {"request_id": f"r{index}", "batch_id": "b", "state": state, "metadata": {"batch": "b"}}
        )
    yield collection


def test_a_query_on_an_exempt_field_is_failed_precondition(records) -> None:
    query = records.where(filter=FieldFilter("metadata.batch", "==", "b"))

    with pytest.raises(exceptions.FailedPrecondition, match=r"metadata\.batch.*exempts"):
        list(query.stream())


def test_a_query_without_its_composite_index_is_failed_precondition(records) -> None:
    query = (
        records.where(filter=FieldFilter("batch_id", "==", "b"))
        .where(filter=FieldFilter("request_id", ">", "r0"))
        .order_by("request_id")
    )

    with pytest.raises(exceptions.FailedPrecondition, match=r"composite index \(batch_id"):
        list(query.stream())


def test_queries_the_terraform_indexes_serve_are_answered(records) -> None:
    page = (
        records.where(filter=FieldFilter("batch_id", "==", "b"))
        .where(filter=FieldFilter("state", "==", "failed"))
        .where(filter=FieldFilter("request_id", ">", "r0"))
        .order_by("request_id")
        .limit(10)
    )
    equality_only = records.where(filter=FieldFilter("batch_id", "==", "b")).where(
        filter=FieldFilter("state", "==", "failed")
    )

    assert [s.id for s in page.stream()] == ["r2"]
    assert equality_only.count(alias="n").get()[0][0].value == 2


def test_control_without_the_indexes_the_batch_page_is_refused(
    records, firestore_emulator: FirestoreEmulator
) -> None:
    control = firestore_emulator.control
    before = control.query_indexes()
    control.set_query_indexes({"exempt": [], "composite": []})
    try:
        page = (
            records.where(filter=FieldFilter("batch_id", "==", "b"))
            .where(filter=FieldFilter("state", "==", "failed"))
            .order_by("request_id")
        )
        with pytest.raises(exceptions.FailedPrecondition, match="composite index"):
            list(page.stream())
    finally:
        control.set_query_indexes(before)
