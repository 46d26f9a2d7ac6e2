"""Fixtures: the Terraform module and environments, parsed once."""

from __future__ import annotations

import pytest
from terraform_hcl import ENVIRONMENTS_DIR, MODULE_DIR, TerraformConfig, load


@pytest.fixture(scope="session")
def bundle_module() -> TerraformConfig:
    """terraform/modules/srp_bundle."""
    return load(MODULE_DIR)


@pytest.fixture(scope="session")
def environments() -> dict[str, TerraformConfig]:
    """terraform/environments/<name> by name."""
    return {path.name: load(path) for path in sorted(ENVIRONMENTS_DIR.iterdir()) if path.is_dir()}
