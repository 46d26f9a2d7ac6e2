"""The single-field index exemptions our Terraform declares, for the local Firestore to mirror."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import hcl2

from local_stack.processes import REPO_ROOT

FIRESTORE_TF = REPO_ROOT / "terraform" / "modules" / "srp_bundle" / "firestore.tf"
_LOCAL = re.compile(r"^\$\{local\.(\w+)\}$")
_VARIABLE = re.compile(r"\$\{var\.(\w+)\}")


def _literal(value: Any, variables: Mapping[str, str], where: str) -> str:
    """An HCL string, with every `${var.name}` in it taken from `variables`."""
    if not isinstance(value, str):
        raise ValueError(f"{where}: {value!r} is not a string")
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1]

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in variables:
            raise ValueError(f"{where}: unknown variable {name} (known: {sorted(variables)})")
        return variables[name]

    text = _VARIABLE.sub(substitute, value)
    if "${" in text:
        raise ValueError(f"{where}: cannot resolve {value!r}")
    return text


def _is_empty_block(blocks: Any) -> bool:
    return (
        isinstance(blocks, list)
        and len(blocks) == 1
        and not {key for key in blocks[0] if not key.startswith("__")}
    )


def terraform_index_exemptions(
    variables: Mapping[str, str], path: Path = FIRESTORE_TF
) -> list[dict[str, str]]:
    """`{collection, field}` of every google_firestore_field with an empty `index_config`
    (one per `for_each` entry when it iterates over a local map)."""
    with path.open() as handle:
        parsed = hcl2.load(handle)
    local_values: dict[str, Any] = {}
    for block in parsed.get("locals", []):
        local_values.update(block)
    exemptions = []
    for block in parsed.get("resource", []):
        for resource_type, by_name in block.items():
            if resource_type.strip('"') != "google_firestore_field":
                continue
            for name, body in by_name.items():
                if not _is_empty_block(body.get("index_config")):
                    continue
                where = f"google_firestore_field.{name.strip(chr(34))}"
                for each in _for_each(body, local_values, where):
                    exemptions.append(
                        {
                            key: _literal(each.get(key, body[key]), variables, where)
                            for key in ("collection", "field")
                        }
                    )
    return exemptions


def _for_each(
    body: dict[str, Any], local_values: Mapping[str, Any], where: str
) -> list[dict[str, Any]]:
    """The entries a resource is repeated for: `{}` once without for_each; with
    `for_each = local.name`, each entry's values stand in for `each.value.<key>`."""
    expression = body.get("for_each")
    if expression is None:
        return [{}]
    match = _LOCAL.match(str(expression))
    if not match or match.group(1) not in local_values:
        raise ValueError(f"{where}: for_each must name a local map, got {expression!r}")
    entries = []
    for entry in local_values[match.group(1)].values():
        entries.append(
            {
                key: entry[value[len("${each.value.") : -1]]
                for key, value in body.items()
                if isinstance(value, str) and value.startswith("${each.value.")
            }
        )
    return entries
