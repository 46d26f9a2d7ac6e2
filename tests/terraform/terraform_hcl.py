"""Read a Terraform folder with python-hcl2 into plain dicts that tests can compare."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hcl2

REPO_ROOT = Path(__file__).resolve().parents[2]
TERRAFORM_DIR = REPO_ROOT / "terraform"
MODULE_DIR = TERRAFORM_DIR / "modules" / "srp_bundle"
ENVIRONMENTS_DIR = TERRAFORM_DIR / "environments"
FUNCTIONS_DIR = REPO_ROOT / "functions"


def clean(value: Any) -> Any:
    """Drop python-hcl2's bookkeeping keys and the quotes it keeps around literal strings."""
    if isinstance(value, dict):
        return {
            clean_key(key): clean(item) for key, item in value.items() if not key.startswith("__")
        }
    if isinstance(value, list):
        return [clean(item) for item in value]
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1].replace('\\"', '"')
    return value


def clean_key(key: str) -> str:
    """Block labels arrive quoted (`"google_storage_bucket"`); attribute names do not."""
    return key[1:-1] if len(key) >= 2 and key[0] == key[-1] == '"' else key


@dataclass
class TerraformConfig:
    """The blocks of one Terraform folder (all its .tf files merged)."""

    folder: Path
    resources: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    data: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    locals: dict[str, Any] = field(default_factory=dict)
    variables: dict[str, dict[str, Any]] = field(default_factory=dict)
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    modules: dict[str, dict[str, Any]] = field(default_factory=dict)
    terraform_blocks: list[dict[str, Any]] = field(default_factory=list)

    def resources_of_type(self, resource_type: str) -> dict[str, dict[str, Any]]:
        """Resources of one type by name."""
        return {
            name: body for (kind, name), body in self.resources.items() if kind == resource_type
        }

    def resource(self, resource_type: str, name: str) -> dict[str, Any]:
        """One resource, failing with its address when it does not exist."""
        assert (resource_type, name) in self.resources, f"{resource_type}.{name} is not defined"
        return self.resources[(resource_type, name)]


def load(folder: Path) -> TerraformConfig:
    """Parse every .tf file of `folder`."""
    config = TerraformConfig(folder)
    for path in sorted(folder.glob("*.tf")):
        with path.open() as handle:
            parsed = clean(hcl2.load(handle))
        for block in parsed.get("resource", []):
            for resource_type, by_name in block.items():
                for name, body in by_name.items():
                    config.resources[(resource_type, name)] = body
        for block in parsed.get("data", []):
            for data_type, by_name in block.items():
                for name, body in by_name.items():
                    config.data[(data_type, name)] = body
        for block in parsed.get("locals", []):
            config.locals.update(block)
        for block in parsed.get("variable", []):
            config.variables.update(block)
        for block in parsed.get("output", []):
            config.outputs.update(block)
        for block in parsed.get("module", []):
            config.modules.update(block)
        config.terraform_blocks.extend(parsed.get("terraform", []))
    return config


def first_block(body: dict[str, Any], name: str) -> dict[str, Any]:
    """The single nested block `name` (python-hcl2 gives every block as a list)."""
    blocks = body.get(name)
    assert isinstance(blocks, list) and blocks, f"block {name!r} is missing"
    first: dict[str, Any] = blocks[0]
    return first


def dynamic_block(body: dict[str, Any], name: str) -> dict[str, Any] | None:
    """The `dynamic "<name>"` block of a resource, if any."""
    for block in body.get("dynamic", []):
        if name in block:
            found: dict[str, Any] = block[name]
            return found
    return None


def references(expression: Any, address: str) -> bool:
    """Whether an HCL expression refers to `address` (e.g. `google_pubsub_topic.reconcile`)."""
    return (
        isinstance(expression, str)
        and re.search(re.escape(address) + r"(?!\w)", expression) is not None
    )


def function_folders() -> set[str]:
    """Names of the deployable functions under functions/ (folders with a main.py)."""
    if not FUNCTIONS_DIR.is_dir():
        return set()
    return {path.parent.name for path in FUNCTIONS_DIR.glob("*/main.py")}
