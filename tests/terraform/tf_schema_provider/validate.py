"""Run `terraform init -backend=false && terraform validate` offline against the schema provider.

The provider is installed from a local filesystem mirror (a CLI configuration with only a
filesystem_mirror installation method), so nothing reaches a registry. Terraform here is
1.0.3 (the newest on PyPI) while the configuration targets >= 1.5, so a copy is validated in
which only the Terraform-version gates are rewritten: required_version is dropped, optional()
attribute defaults become plain optional() with 1.0's module_variable_optional_attrs experiment,
and each read of such a variable goes through that experiment's defaults() with the same values.
Resource, data source and provider blocks are validated exactly as written.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tf_schema_provider import CACHE_DIR, VALIDATED_PROVIDER_VERSIONS
from tf_schema_provider.schema import ensure_schema

PACKAGE_PARENT = Path(__file__).resolve().parents[1]
PROVIDER_ADDRESS = ("registry.terraform.io", "hashicorp", "google")
_REQUIRED_VERSION = re.compile(r"^\s*required_version\s*=.*\n", re.MULTILINE)
_TERRAFORM_BLOCK = re.compile(r"^terraform \{\n", re.MULTILINE)
_VARIABLE = re.compile(r'^variable "(\w+)" \{\n', re.MULTILINE)


@dataclass(frozen=True)
class Outcome:
    """What `terraform validate -json` said about one folder."""

    valid: bool
    diagnostics: list[dict[str, Any]]
    output: str

    def summaries(self) -> list[str]:
        """Each diagnostic as 'severity: summary: detail'."""
        return [f"{d['severity']}: {d['summary']}: {d.get('detail', '')}" for d in self.diagnostics]


def platform() -> str:
    """Terraform's name of this machine's platform (the mirror folder)."""
    machine = os.uname().machine
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)
    return f"{sys.platform}_{arch}"


def ensure_mirror(provider_version: str) -> Path:
    """A filesystem mirror holding the schema provider as hashicorp/google `provider_version`."""
    schema = ensure_schema(provider_version)
    mirror = CACHE_DIR / f"mirror-{provider_version}"
    folder = mirror.joinpath(*PROVIDER_ADDRESS, provider_version, platform())
    executable = folder / f"terraform-provider-google_v{provider_version}"
    script = (
        "#!/bin/sh\n"
        f'PYTHONPATH="{PACKAGE_PARENT}" exec "{sys.executable}" -m tf_schema_provider.server'
        f' --schema "{schema}"\n'
    )
    if not executable.exists() or executable.read_text() != script:
        folder.mkdir(parents=True, exist_ok=True)
        executable.write_text(script)
        executable.chmod(0o755)
    return mirror


def cli_config(provider_version: str) -> Path:
    """A Terraform CLI configuration installing hashicorp/google from the mirror only."""
    config = CACHE_DIR / f"terraformrc-{provider_version}"
    config.write_text(
        "provider_installation {\n"
        "  filesystem_mirror {\n"
        f'    path    = "{ensure_mirror(provider_version)}"\n'
        '    include = ["registry.terraform.io/hashicorp/google"]\n'
        "  }\n"
        "}\n"
    )
    return config


def _optional_calls(type_expression: str) -> list[tuple[int, int, str, str | None]]:
    """(start, end, type, default or None) of each top-level `optional(...)` call."""
    calls, index = [], 0
    while (start := type_expression.find("optional(", index)) != -1:
        depth, position, comma = 0, start + len("optional("), None
        while True:
            char = type_expression[position]
            if char in "([{":
                depth += 1
            elif char in ")]}":
                if depth == 0:
                    break
                depth -= 1
            elif char == "," and depth == 0 and comma is None:
                comma = position
            position += 1
        inner_start = start + len("optional(")
        if comma is None:
            calls.append((start, position + 1, type_expression[inner_start:position], None))
        else:
            calls.append(
                (
                    start,
                    position + 1,
                    type_expression[inner_start:comma].strip(),
                    type_expression[comma + 1 : position].strip(),
                )
            )
        index = position + 1
    return calls


def drop_default(type_expression: str) -> str:
    """`optional(T, default)` -> `optional(T)`, for every optional() in a type expression."""
    out, index = [], 0
    for start, end, attribute_type, _ in _optional_calls(type_expression):
        out += [type_expression[index:start], f"optional({drop_default(attribute_type)})"]
        index = end
    return "".join([*out, type_expression[index:]])


def attribute_defaults(source: str) -> dict[str, dict[str, str]]:
    """Per variable of a .tf file, its object attributes' optional() defaults (HCL literals)."""
    found: dict[str, dict[str, str]] = {}
    for match in _VARIABLE.finditer(source):
        body = source[match.end() : source.find("\n}\n", match.end())]
        defaults = {}
        for start, _, _, default in _optional_calls(body):
            attribute = re.search(r"(\w+)\s*=\s*$", body[:start])
            if default is not None and attribute:
                defaults[attribute.group(1)] = default
        if defaults:
            found[match.group(1)] = defaults
    return found


def with_defaults(source: str, defaults: dict[str, dict[str, str]]) -> str:
    """Every `var.NAME` read through Terraform 1.0's defaults(), which 1.3 applies by itself."""
    for name, values in defaults.items():
        literal = "{ " + ", ".join(f"{key} = {value}" for key, value in values.items()) + " }"
        source = re.sub(rf"\bvar\.{name}\b", f"defaults(var.{name}, {literal})", source)
    return source


def for_terraform_1_0(source: str, defaults: dict[str, dict[str, str]]) -> str:
    """One .tf file rewritten so Terraform 1.0 accepts its version gates (see module docstring)."""
    rewritten = drop_default(with_defaults(_REQUIRED_VERSION.sub("", source), defaults))
    return _TERRAFORM_BLOCK.sub(
        "terraform {\n  experiments = [module_variable_optional_attrs]\n", rewritten, count=1
    )


def validation_copy(terraform_dir: Path, destination: Path) -> Path:
    """Copy terraform/ (no .terraform folders, no lock files) rewritten for Terraform 1.0."""
    shutil.copytree(
        terraform_dir,
        destination,
        ignore=shutil.ignore_patterns(".terraform", ".terraform.lock.hcl", "*.tfstate*"),
    )
    for folder in {path.parent for path in destination.rglob("*.tf")}:
        files = sorted(folder.glob("*.tf"))
        defaults = {k: v for path in files for k, v in attribute_defaults(path.read_text()).items()}
        for path in files:
            path.write_text(for_terraform_1_0(path.read_text(), defaults))
    return destination


def terraform_validate(terraform: str, folder: Path, provider_version: str) -> Outcome:
    """`terraform init -backend=false` then `terraform validate -json` in `folder`."""
    environment = {
        **os.environ,
        "TF_CLI_CONFIG_FILE": str(cli_config(provider_version)),
        "TF_IN_AUTOMATION": "1",
        "TF_INPUT": "0",
        "CHECKPOINT_DISABLE": "1",
    }
    environment.pop("TF_PLUGIN_CACHE_DIR", None)
    init = subprocess.run(
        [terraform, "init", "-backend=false", "-input=false", "-no-color"],
        cwd=folder,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if init.returncode != 0:
        return Outcome(False, [], f"terraform init failed:\n{init.stdout}{init.stderr}")
    result = subprocess.run(
        [terraform, "validate", "-json", "-no-color"],
        cwd=folder,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )
    try:
        report = json.loads(result.stdout)
    except json.JSONDecodeError:
        return Outcome(False, [], f"terraform validate crashed:\n{result.stdout}{result.stderr}")
    return Outcome(bool(report["valid"]), report["diagnostics"], result.stdout + result.stderr)


def validated_versions() -> list[str]:
    """Every provider version CI validates against, newest first."""
    return sorted(
        VALIDATED_PROVIDER_VERSIONS, key=lambda v: tuple(int(p) for p in v.split(".")), reverse=True
    )
