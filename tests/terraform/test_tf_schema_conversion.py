"""How tf_schema_provider reads a cdktf jsii assembly, on a tiny hand-made one."""

from __future__ import annotations

from typing import Any

from tf_schema_provider.schema import convert, snake_case

DOCS = "https://registry.terraform.io/providers/hashicorp/google/6.50.0/docs"
RESOLVABLE = {"fqn": "cdktf.IResolvable"}


def _link(anchor: str, page: str = "/resources/thing") -> dict[str, str]:
    return {
        "summary": f"Docs at Terraform Registry: {{@link {DOCS}{page}#{anchor} Thing#{anchor}}}."
    }


def _prop(
    name: str, jsii_type: dict[str, Any], anchor: str, optional: bool = True
) -> dict[str, Any]:
    return {"name": name, "type": jsii_type, "optional": optional, "docs": _link(anchor)}


def _getter(name: str, jsii_type: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "type": jsii_type, "immutable": True}


def _class(fqn: str, base: str, summary: str, config: str, getters: list[Any]) -> dict[str, Any]:
    return {
        "fqn": fqn,
        "kind": "class",
        "base": base,
        "docs": {"summary": summary},
        "initializer": {"parameters": [{"name": "config", "type": {"fqn": config}}]},
        "properties": getters,
    }


def _struct(properties: list[dict[str, Any]]) -> dict[str, Any]:
    return {"kind": "interface", "datatype": True, "properties": properties}


ASSEMBLY = {
    "types": {
        "p.Provider": _class("p.Provider", "cdktf.TerraformProvider", "", "p.ProviderConfig", []),
        "p.ProviderConfig": _struct(
            [
                _prop("project", {"primitive": "string"}, "project"),
                _prop("alias", {"primitive": "string"}, "alias"),
            ]
        ),
        "p.Thing": _class(
            "p.Thing",
            "cdktf.TerraformResource",
            f"Represents a {{@link {DOCS}/resources/thing google_thing}}.",
            "p.ThingConfig",
            [
                _getter("selfLink", {"primitive": "string"}),
                _getter("buildAttribute", {"primitive": "string"}),
                _getter("nameInput", {"primitive": "string"}),
                _getter("retry", {"fqn": "p.ThingRetryOutputReference"}),
                {"name": "tfResourceType", "type": {"primitive": "string"}, "static": True},
            ],
        ),
        "p.ThingConfig": _struct(
            [
                _prop("name", {"primitive": "string"}, "name", optional=False),
                _prop(
                    "enableIpv6",
                    {"union": {"types": [{"primitive": "boolean"}, RESOLVABLE]}},
                    "enable_ipv6",
                ),
                _prop(
                    "tags",
                    {"collection": {"kind": "array", "elementtype": {"primitive": "string"}}},
                    "tags",
                ),
                _prop("retry", {"fqn": "p.ThingRetry"}, "retry", optional=False),
                _prop(
                    "rule",
                    {
                        "union": {
                            "types": [
                                RESOLVABLE,
                                {
                                    "collection": {
                                        "kind": "array",
                                        "elementtype": {"fqn": "p.ThingRule"},
                                    }
                                },
                            ]
                        }
                    },
                    "rule",
                ),
            ]
        ),
        "p.ThingRetry": _struct([_prop("attempts", {"primitive": "number"}, "attempts")]),
        "p.ThingRetryOutputReference": {
            "kind": "class",
            "properties": [_getter("lastError", {"primitive": "string"})],
        },
        "p.ThingRule": _struct([_prop("labels", {"fqn": "cdktf.StringMap"}, "labels")]),
        "p.DataThing": _class(
            "p.DataThing",
            "cdktf.TerraformDataSource",
            f"Represents a {{@link {DOCS}/data-sources/thing google_thing}}.",
            "p.DataThingConfig",
            [_getter("number", {"primitive": "string"})],
        ),
        "p.DataThingConfig": _struct([_prop("id", {"primitive": "string"}, "id")]),
    }
}


def test_names_kinds_and_types_come_from_the_assembly() -> None:
    provider, resources, data_sources = convert(ASSEMBLY)

    # alias is Terraform's own meta-argument, never the provider's.
    assert [attribute.name for attribute in provider.attributes] == ["project"]

    thing = resources["google_thing"]
    attributes = {attribute.name: attribute for attribute in thing.attributes}
    assert attributes["name"].required and not attributes["name"].optional
    assert attributes["enable_ipv6"].type == "bool" and attributes["enable_ipv6"].optional
    assert attributes["tags"].type == ["list", "string"]
    # Computed getters: snake_case, cdktf's "Attribute" rename undone; inputs and statics not.
    assert attributes["self_link"].computed and not attributes["self_link"].optional
    assert "build" in attributes
    assert not {"name_input", "tf_resource_type", "retry"} & set(attributes)

    blocks = {block.type_name: block for block in thing.block_types}
    # A single struct is a block of at most one; a required one needs one.
    assert (blocks["retry"].min_items, blocks["retry"].max_items) == (1, 1)
    retry_attributes = {attribute.name for attribute in blocks["retry"].block.attributes}
    assert retry_attributes == {"attempts", "last_error"}
    assert (blocks["rule"].min_items, blocks["rule"].max_items) == (0, 0)
    assert blocks["rule"].block.attributes[0].type == ["map", "string"]

    assert {attribute.name for attribute in data_sources["google_thing"].attributes} == {
        "id",
        "number",
    }


def test_snake_case_undoes_cdktf_camel_case() -> None:
    assert snake_case("maxInstanceRequestConcurrency") == "max_instance_request_concurrency"
    assert snake_case("ipv4Enabled") == "ipv4_enabled"
    assert snake_case("uri") == "uri"
