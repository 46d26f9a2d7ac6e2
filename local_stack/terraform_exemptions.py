"""The single-field index exemptions our Terraform declares, for the local Firestore to mirror."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import hcl2

from local_stack.processes import REPO_ROOT

FIRESTORE_TF = REPO_ROOT / "terraform" / "modules" / "srp_bundle" / "firestore.tf"
_VARIABLE = re.compile(r"^\$\{var\.(\w+)\}$")


def _literal(value: Any, variables: Mapping[str, str], where: str) -> str:
    """A quoted HCL string or `${var.name}` resolved from `variables`."""
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    match = _VARIABLE.match(value) if isinstance(value, str) else None
    if match and match.group(1) in variables:
        return variables[match.group(1)]
    raise ValueError(f"{where}: cannot resolve {value!r} (known variables: {sorted(variables)})")


def _is_empty_block(blocks: Any) -> bool:
    return (
        isinstance(blocks, list)
        and len(blocks) == 1
        and not {key for key in blocks[0] if not key.startswith("__")}
    )


def terraform_index_exemptions(
    variables: Mapping[str, str], path: Path = FIRESTORE_TF
) -> list[dict[str, str]]:
    """`{collection, field}` of every google_firestore_field with an empty `index_config`."""
    with path.open() as handle:
        parsed = hcl2.load(handle)
    exemptions = []
    for block in parsed.get("resource", []):
        for resource_type, by_name in block.items():
            if resource_type.strip('"') != "google_firestore_field":
                continue
            for name, body in by_name.items():
                if not _is_empty_block(body.get("index_config")):
                    continue
                where = f"google_firestore_field.{name.strip(chr(34))}"
                exemptions.append(
                    {
                        "collection": _literal(body["collection"], variables, where),
                        "field": _literal(body["field"], variables, where),
                    }
                )
    return exemptions
