"""Turn @cdktf/provider-google's jsii assembly into the provider's tfplugin5 schema.

cdktf generated one class per resource and data source ("Represents a {@link <docs url>
google_x}"), a Config interface of its arguments (optional or not; blocks typed as structs,
a single struct when the block allows at most one) and getters for what the provider computes.
The Terraform name of each argument is the anchor of its documentation link.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from tf_schema_provider import CACHE_DIR, VALIDATED_PROVIDER_VERSIONS
from tf_schema_provider.wire import (
    Attribute,
    Block,
    NestedBlock,
    provider_schema_response,
)

NPM_PACKAGE = "@cdktf/provider-google"
_DOCS_LINK = re.compile(
    r"\{@link https://registry\.terraform\.io/providers/hashicorp/google/"
    r"[^/]+/docs(?P<path>/(?:resources|data-sources)/\w+)?(?:#(?P<anchor>\w+))?"
    r" (?P<label>[^}]+)\}"
)
_PRIMITIVES = {"string": "string", "number": "number", "boolean": "bool"}
_MAPS = {"cdktf.StringMap": "string", "cdktf.NumberMap": "number", "cdktf.BooleanMap": "bool"}
_RESOLVABLE = "cdktf.IResolvable"
# Meta-arguments Terraform itself owns.
_PROVIDER_META_ARGUMENTS = {"alias"}
# Getters every cdktf construct has that are not provider attributes.
_CONSTRUCT_MEMBERS = {"internalValue", "fqn", "node", "friendlyUniqueId", "terraformResourceType"}


def schema_path(provider_version: str) -> Path:
    """Where the encoded GetProviderSchema answer of a provider version is cached.

    Named by the converter's own source too, so a change to the conversion converts again.
    """
    converter = hashlib.sha256()
    for module in ("schema.py", "wire.py"):
        converter.update((Path(__file__).parent / module).read_bytes())
    return CACHE_DIR / f"google-{provider_version}-{converter.hexdigest()[:12]}.schema.pb"


def ensure_schema(provider_version: str) -> Path:
    """The cached schema of `provider_version`, downloading and converting it when missing."""
    target = schema_path(provider_version)
    if target.exists():
        return target
    assembly = load_assembly(provider_version)
    encoded = provider_schema_response(*convert(assembly))
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    partial.write_bytes(encoded)
    partial.replace(target)
    for stale in target.parent.glob(f"google-{provider_version}-*.schema.pb"):
        if stale != target:
            stale.unlink()
    return target


def load_assembly(provider_version: str) -> dict[str, Any]:
    """The jsii assembly of the cdktf package made from `provider_version` (npm pack, checked)."""
    package_version, integrity = VALIDATED_PROVIDER_VERSIONS[provider_version]
    with tempfile.TemporaryDirectory() as folder:
        subprocess.run(
            ["npm", "pack", f"{NPM_PACKAGE}@{package_version}", "--silent"],
            cwd=folder,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        (tarball,) = Path(folder).glob("*.tgz")
        algorithm, expected = integrity.split("-", 1)
        digest = base64.b64encode(hashlib.new(algorithm, tarball.read_bytes()).digest()).decode()
        if digest != expected:
            raise RuntimeError(f"{tarball.name}: integrity {digest} is not the pinned {expected}")
        with tarfile.open(tarball) as archive:
            member = archive.extractfile("package/.jsii")
            assert member is not None, f"{tarball.name} has no .jsii assembly"
            loaded: dict[str, Any] = json.load(member)
            return loaded


def convert(assembly: dict[str, Any]) -> tuple[Block, dict[str, Block], dict[str, Block]]:
    """The provider block and the resource and data source blocks, by Terraform name."""
    types: dict[str, Any] = assembly["types"]
    converter = _Converter(types)
    provider: Block | None = None
    resources: dict[str, Block] = {}
    data_sources: dict[str, Block] = {}
    for fqn, definition in types.items():
        base = definition.get("base")
        if definition.get("kind") != "class" or base not in {
            "cdktf.TerraformResource",
            "cdktf.TerraformDataSource",
            "cdktf.TerraformProvider",
        }:
            continue
        config_fqn = _config_interface(definition)
        if base == "cdktf.TerraformProvider":
            provider = converter.block(config_fqn, fqn, skip=_PROVIDER_META_ARGUMENTS)
            continue
        link = _DOCS_LINK.search(definition["docs"].get("summary", ""))
        assert link is not None and link.group("path"), f"{fqn}: no Terraform name in its docs"
        name = link.group("label").strip()
        target = data_sources if "/data-sources/" in link.group("path") else resources
        target[name] = converter.block(config_fqn, fqn)
    assert provider is not None, "the assembly has no provider class"
    return provider, resources, data_sources


def _config_interface(definition: dict[str, Any]) -> str:
    for parameter in definition["initializer"]["parameters"]:
        if parameter["name"] == "config":
            fqn: str = parameter["type"]["fqn"]
            return fqn
    raise AssertionError(f"{definition['fqn']} takes no config")


def snake_case(name: str) -> str:
    """cdktf's camelCase property name back to Terraform's snake_case."""
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()


class _Converter:
    def __init__(self, types: dict[str, Any]) -> None:
        self.types = types

    def block(self, config_fqn: str, class_fqn: str | None, skip: set[str] | None = None) -> Block:
        """The block of a Config or nested-block struct, plus the computed getters of its class."""
        block = Block()
        configured: set[str] = set()
        for prop in self.types[config_fqn].get("properties", []):
            configured.add(prop["name"])
            name = _terraform_name(prop)
            if name in (skip or set()):
                continue
            required = not prop.get("optional", False)
            nested = self._nested_struct(prop["type"])
            if nested is not None:
                struct_fqn, single = nested
                block.block_types.append(
                    NestedBlock(
                        type_name=name,
                        block=self.block(struct_fqn, struct_fqn + "OutputReference"),
                        min_items=1 if required else 0,
                        max_items=1 if single else 0,
                    )
                )
            else:
                block.attributes.append(
                    Attribute(
                        name=name,
                        type=self.value_type(prop["type"]),
                        required=required,
                        optional=not required,
                        computed=not required,
                    )
                )
        if class_fqn is not None and class_fqn in self.types:
            block.attributes.extend(self._computed(class_fqn, configured))
        return block

    def _computed(self, class_fqn: str, configured: set[str]) -> list[Attribute]:
        """Read-only getters that are not arguments: attributes the provider computes."""
        computed = []
        for prop in self.types[class_fqn].get("properties", []):
            name = prop["name"]
            if (
                not prop.get("immutable")
                or prop.get("static")
                or prop.get("protected")
                or name.endswith("Input")
                or name in configured
                or name in _CONSTRUCT_MEMBERS
            ):
                continue
            if self._is_block_reference(prop["type"]):
                continue
            # cdktf renames a getter that would clash with a member of its own ("build" of
            # build_config becomes buildAttribute).
            terraform_name = snake_case(name.removesuffix("Attribute"))
            computed.append(
                Attribute(name=terraform_name, type=self.value_type(prop["type"]), computed=True)
            )
        return computed

    def _is_block_reference(self, jsii_type: dict[str, Any]) -> bool:
        fqn = jsii_type.get("fqn", "")
        if not fqn.endswith(("OutputReference", "List")):
            return False
        struct = fqn.removesuffix("OutputReference").removesuffix("List")
        # A block's getter: its struct is also an argument type; computed lists are attributes.
        return struct in self.types and fqn.endswith("OutputReference")

    def _nested_struct(self, jsii_type: dict[str, Any]) -> tuple[str, bool] | None:
        """(struct fqn, at most one) when the property is a nested block."""
        options = _without_resolvable(jsii_type)
        if len(options) != 1:
            return None
        (option,) = options
        if "fqn" in option and self._is_struct(option["fqn"]):
            return option["fqn"], True
        collection = option.get("collection")
        if collection and collection["kind"] == "array":
            element = collection["elementtype"]
            if "fqn" in element and self._is_struct(element["fqn"]):
                return element["fqn"], False
        return None

    def _is_struct(self, fqn: str) -> bool:
        definition = self.types.get(fqn)
        return bool(
            definition and definition.get("kind") == "interface" and definition.get("datatype")
        )

    def value_type(self, jsii_type: dict[str, Any]) -> Any:
        """The cty type (in its JSON form) of an attribute; dynamic when cdktf lost it."""
        options = _without_resolvable(jsii_type)
        if len(options) != 1:
            return "dynamic"
        (option,) = options
        if "primitive" in option:
            return _PRIMITIVES.get(option["primitive"], "dynamic")
        if "collection" in option:
            collection = option["collection"]
            kind = {"array": "list", "map": "map"}[collection["kind"]]
            return [kind, self.value_type(collection["elementtype"])]
        if option.get("fqn") in _MAPS:
            return ["map", _MAPS[option["fqn"]]]
        return "dynamic"


def _without_resolvable(jsii_type: dict[str, Any]) -> list[dict[str, Any]]:
    if "union" in jsii_type:
        return [t for t in jsii_type["union"]["types"] if t.get("fqn") != _RESOLVABLE]
    return [] if jsii_type.get("fqn") == _RESOLVABLE else [jsii_type]


def _terraform_name(prop: dict[str, Any]) -> str:
    docs = prop.get("docs", {})
    for text in (docs.get("remarks", ""), docs.get("summary", "")):
        link = _DOCS_LINK.search(text)
        if link and link.group("anchor"):
            return link.group("anchor")
    return snake_case(prop["name"])


def main() -> None:
    """Download and convert the schema of every validated provider version (bootstrap step)."""
    quiet = "--quiet" in sys.argv[1:]
    versions = [a for a in sys.argv[1:] if a != "--quiet"] or sorted(VALIDATED_PROVIDER_VERSIONS)
    for version in versions:
        cached = schema_path(version).exists()
        path = ensure_schema(version)
        if not (quiet and cached):
            print(f"==> hashicorp/google {version} schema: {path}")


if __name__ == "__main__":
    main()
