"""`terraform validate` offline, against the schema of every provider version we pin.

See tests/terraform/tf_schema_provider: a schema-only hashicorp/google served from a local
filesystem mirror, with the schema cdktf generated from that provider version.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from terraform_hcl import MODULE_DIR, TERRAFORM_DIR
from test_terraform_tools import terraform_binary
from tf_schema_provider.validate import (
    Outcome,
    drop_default,
    terraform_validate,
    validated_versions,
    validation_copy,
)

NEWEST = validated_versions()[0]
# The environments pin the newest version; the module accepts every validated one.
ROOTS_AND_VERSIONS = [
    ("environments/dev", NEWEST),
    ("environments/prod", NEWEST),
    *[("modules/srp_bundle", version) for version in validated_versions()],
]


def errors(outcome: Outcome) -> list[str]:
    """Error diagnostics as 'summary: detail'."""
    return [
        f"{d['summary']}: {d.get('detail', '')}"
        for d in outcome.diagnostics
        if d["severity"] == "error"
    ]


@pytest.mark.parametrize(("root", "provider_version"), ROOTS_AND_VERSIONS)
def test_terraform_validate_passes(tmp_path: Path, root: str, provider_version: str) -> None:
    copy = validation_copy(TERRAFORM_DIR, tmp_path / "terraform")
    outcome = terraform_validate(terraform_binary(), copy / root, provider_version)
    assert outcome.valid, "\n".join(errors(outcome)) or outcome.output
    # The only warnings are the Terraform 1.0 experiment the copy opts into.
    for diagnostic in outcome.diagnostics:
        assert "module_variable_optional_attrs" in diagnostic["summary"], diagnostic


def _replace_once(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert text.count(old) >= 1, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def _append(path: Path, text: str) -> None:
    path.write_text(path.read_text() + text)


# Each planted mistake: how to plant it in the module copy, and the error it must produce.
PLANTED: dict[str, tuple[Callable[[Path], None], str]] = {
    "misspelt argument": (
        lambda module: _replace_once(
            module / "storage.tf", "uniform_bucket_level_access", "uniform_bucket_level_acess"
        ),
        r'Unsupported argument: An argument named "uniform_bucket_level_acess" is not expected',
    ),
    "unknown resource type": (
        lambda module: _append(
            module / "messaging.tf",
            '\nresource "google_pubsub_topics" "planted" {\n  name = "planted"\n}\n',
        ),
        r"Invalid resource type: The provider .*google does not support resource type"
        r' "google_pubsub_topics"',
    ),
    "missing required argument": (
        lambda module: _append(
            module / "messaging.tf",
            '\nresource "google_pubsub_subscription" "planted" {\n  name = "planted"\n}\n',
        ),
        r'Missing required argument: The argument "topic" is required',
    ),
    "block at the wrong level": (
        lambda module: _replace_once(
            module / "messaging.tf",
            "  dead_letter_policy {\n",
            '  oidc_token {\n    service_account_email = "planted"\n  }\n\n'
            "  dead_letter_policy {\n",
        ),
        r'Unsupported block type: Blocks of type "oidc_token" are not expected here',
    ),
    "misspelt attribute reference": (
        lambda module: _replace_once(
            module / "messaging.tf",
            "google_service_account.pubsub_push.email",
            "google_service_account.pubsub_push.emial",
        ),
        r"Unsupported attribute: This object has no argument, nested block, or exported"
        r' attribute named "emial"',
    ),
    "duplicated single block": (
        lambda module: _replace_once(
            module / "messaging.tf",
            "  expiration_policy {\n",
            '  expiration_policy {\n    ttl = ""\n  }\n\n  expiration_policy {\n',
        ),
        r'Too many expiration_policy blocks: No more than 1 "expiration_policy" blocks are allowed',
    ),
}


@pytest.mark.parametrize("provider_version", validated_versions())
@pytest.mark.parametrize("mistake", sorted(PLANTED))
def test_terraform_validate_catches_a_planted_mistake(
    tmp_path: Path, mistake: str, provider_version: str
) -> None:
    copy = validation_copy(MODULE_DIR, tmp_path / "srp_bundle")
    plant, expected = PLANTED[mistake]
    plant(copy)
    outcome = terraform_validate(terraform_binary(), copy, provider_version)
    assert not outcome.valid
    found = errors(outcome)
    assert any(re.search(expected, error, re.DOTALL) for error in found), found or outcome.output


def test_validation_copy_only_rewrites_version_gates() -> None:
    assert drop_default("object({ a = optional(number, 5), b = optional(list(string), []) })") == (
        "object({ a = optional(number), b = optional(list(string)) })"
    )
    assert drop_default("map(object({ cpu = optional(string) }))") == (
        "map(object({ cpu = optional(string) }))"
    )
