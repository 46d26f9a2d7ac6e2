"""The media budget (MEDIA_TIMEOUT_SECONDS) and the function timeouts agree: code, Terraform."""

from __future__ import annotations

import re
from typing import Any

import pytest
from terraform_hcl import TerraformConfig

from srp_bundle import settings
from srp_bundle.errors import ConfigurationError

# The functions that post-process output files: postprocess_render, and reconcile re-driving it.
MEDIA_FUNCTIONS = ("postprocess_render", "reconcile_tasks")
_OPTIONAL_DEFAULT = re.compile(r"(\w+)\s*=\s*optional\(\w+,\s*([^)]+)\)")
_MEMORY = re.compile(r"^(\d+)(Mi|Gi)$")


def tuning_defaults(bundle_module: TerraformConfig) -> dict[str, str]:
    """The defaults of var.task_tuning's optional attributes, as written."""
    return dict(_OPTIONAL_DEFAULT.findall(bundle_module.variables["task_tuning"]["type"]))


def memory_bytes(text: str) -> int:
    """A Cloud Functions memory size ("512Mi", "2Gi") in bytes."""
    match = _MEMORY.match(text)
    assert match, f"unexpected memory size {text!r}"
    return int(match.group(1)) << (20 if match.group(2) == "Mi" else 30)


def environment(bundle_module: TerraformConfig, name: str) -> dict[str, Any]:
    """The plain environment variables Terraform gives function `name`."""
    found: dict[str, Any] = bundle_module.locals["functions"][name]["environment"]
    return found


def test_terraform_defaults_are_the_code_defaults(bundle_module: TerraformConfig) -> None:
    defaults = tuning_defaults(bundle_module)
    code = settings.Settings(project_id="p")
    assert int(defaults["media_timeout_seconds"]) == code.media_timeout_seconds
    assert int(defaults["media_memory_bytes"]) == code.media_memory_bytes
    assert int(defaults["max_animation_pixels"]) == code.max_animation_pixels


@pytest.mark.parametrize("name", MEDIA_FUNCTIONS)
def test_the_media_budget_fits_inside_the_function_timeout(
    bundle_module: TerraformConfig, name: str
) -> None:
    env = environment(bundle_module, name)
    assert env["MEDIA_TIMEOUT_SECONDS"] == "${tostring(var.task_tuning.media_timeout_seconds)}"
    # The function is told its own deployed timeout, so it can refuse a budget that does not fit.
    assert env["FUNCTION_TIMEOUT_SECONDS"] == (
        f'${{tostring(local.scaling["{name}"].timeout_seconds)}}'
    )
    scaling = bundle_module.locals["default_scaling"][name]
    budget = int(tuning_defaults(bundle_module)["media_timeout_seconds"])
    assert budget + settings.MEDIA_BUDGET_MARGIN_SECONDS <= scaling["timeout_seconds"]
    # Each ffmpeg/ffprobe child's address space leaves room for the function itself.
    media_memory = int(tuning_defaults(bundle_module)["media_memory_bytes"])
    assert media_memory <= memory_bytes(scaling["memory"]) // 2

    deployed = {
        "GOOGLE_CLOUD_PROJECT": "p",
        "SRP_API_KEY": "key",
        "WEBHOOK_URL": "https://hooks.example/ingest",
        "WEBHOOK_SECRET": "0123456789abcdef0123",
        "EVENTS_TOPIC": "render-events",
        "RENDERS_BUCKET": "renders",
        "DERIVATIVES_BUCKET": "derivatives",
        "MEDIA_TIMEOUT_SECONDS": str(budget),
        "FUNCTION_TIMEOUT_SECONDS": str(scaling["timeout_seconds"]),
    }
    assert settings.load_settings(name, deployed).media_timeout_seconds == budget
    # An override that no longer fits stops the function at start-up, naming the variable.
    deployed["FUNCTION_TIMEOUT_SECONDS"] = str(budget + settings.MEDIA_BUDGET_MARGIN_SECONDS - 1)
    with pytest.raises(ConfigurationError, match="MEDIA_TIMEOUT_SECONDS"):
        settings.load_settings(name, deployed)
