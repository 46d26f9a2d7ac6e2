"""The Firestore indexes our Terraform declares, for the local Firestore and the simulator to
mirror: single-field exemptions, composite indexes, and the rule by which production refuses
a query the indexes cannot serve (`query_refusal`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from fnmatch import fnmatchcase
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


def terraform_composite_indexes(
    variables: Mapping[str, str], path: Path = FIRESTORE_TF
) -> list[dict[str, Any]]:
    """`{collection, fields: [{field_path, order}]}` of every google_firestore_index."""
    with path.open() as handle:
        parsed = hcl2.load(handle)
    indexes = []
    for block in parsed.get("resource", []):
        for resource_type, by_name in block.items():
            if resource_type.strip('"') != "google_firestore_index":
                continue
            for name, body in by_name.items():
                where = f"google_firestore_index.{name.strip(chr(34))}"
                if _literal(body.get("query_scope", "COLLECTION"), {}, where) != "COLLECTION":
                    continue  # collection-group indexes: the code makes no such query
                fields = [
                    {
                        "field_path": _literal(field["field_path"], variables, where),
                        "order": _literal(field.get("order", "ASCENDING"), variables, where),
                    }
                    for field in body.get("fields", [])
                ]
                collection = _literal(body["collection"], variables, where)
                indexes.append({"collection": collection, "fields": fields})
    return indexes


# Operators production serves from an equality index (several of them merge, no composite).
_EQUALITY = frozenset({"==", "in", "array_contains", "array-contains", "array_contains_any"})


def query_refusal(
    collection: str,
    filters: list[tuple[str, str]],
    orders: list[tuple[str, str]],
    exempt: frozenset[tuple[str, str]],
    indexes: list[dict[str, Any]],
) -> str | None:
    """Why production Firestore refuses this query (FAILED_PRECONDITION), or None.

    `filters` are (field, operator), `orders` (field, "ASCENDING" or "DESCENDING"),
    `exempt` (collection, field) pairs without a single-field index; a collection pattern
    may hold `*` (as in local_stack/firestore/indexes.js, the same rule for the emulator).
    A query on an exempt field has no index to use. Equality filters alone (on any number
    of fields) are served by merging single-field indexes, and so is one field filtered and
    ordered alone; any other shape needs a composite index whose fields are the equality
    fields (any order), then the ordered fields in order (an inequality field is ordered,
    first, when no order is given).
    """
    named = [field for field, _ in filters] + [field for field, _ in orders]
    for field in named:
        if any(
            fnmatchcase(collection, c) and (field == f or field.startswith(f"{f}."))
            for c, f in exempt
        ):
            return (
                f"the query on {collection} uses the field {field}, which Terraform exempts "
                "from indexing (google_firestore_field with an empty index_config): no index "
                "can serve it"
            )
    equality = {field for field, op in filters if op in _EQUALITY}
    ordered = [(field, order) for field, order in orders if field != "__name__"]
    inequality = sorted({field for field, op in filters if op not in _EQUALITY})
    if not ordered:
        ordered = [(field, "ASCENDING") for field in inequality]
    if not ordered or (not equality and len({field for field, _ in ordered}) == 1):
        return None
    for index in indexes:
        if not fnmatchcase(collection, index["collection"]):
            continue
        fields = [(f["field_path"], f["order"]) for f in index["fields"]]
        head, tail = fields[: len(equality)], fields[len(equality) :]
        if {field for field, _ in head} == equality and tail == ordered:
            return None
    wanted = ", ".join([*sorted(equality), *(f"{f} {o.lower()}" for f, o in ordered)])
    return (
        f"the query on {collection} needs a composite index ({wanted}) that Terraform does "
        "not declare (google_firestore_index)"
    )


# A tasks collection of any name: what every test's collection is held to by default.
ANY_TASKS_COLLECTION = {"tasks_collection": "*"}


def terraform_query_indexes(variables: Mapping[str, str] = ANY_TASKS_COLLECTION) -> dict[str, Any]:
    """`{exempt, composite}` for the local Firestore's query check (FIRESTORE_QUERY_INDEXES)."""
    return {
        "exempt": terraform_index_exemptions(variables),
        "composite": terraform_composite_indexes(variables),
    }
