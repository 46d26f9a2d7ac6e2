"""Assemble each function's deploy folder and zip: main.py + this package + its lock.

Run `python -m srp_bundle.build` (or `srp-bundle-build`). Version ranges live in
pyproject.toml; each function's `functions/<name>/requirements.txt` locks them to exact
versions with hashes for the Cloud Functions runtime, and records a digest of its
inputs, so a lock that no longer matches pyproject.toml is refused here and fails the
tests (no network needed to tell). `python -m srp_bundle.build --lock` regenerates the
locks (needs `uv` and the package index). Zips are byte-for-byte reproducible, so their
content hash changes only when the function or its locked dependencies really changed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from collections.abc import Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
PACKAGE_DIR = Path(__file__).resolve().parent
# Extras of pyproject.toml that only some functions need (keeps the others' images small).
EXTRAS_BY_FUNCTION: dict[str, tuple[str, ...]] = {"postprocess_render": ("images",)}
_ZIP_TIMESTAMP = (1980, 1, 1, 0, 0, 0)
_SKIPPED = {"__pycache__", ".mypy_cache", ".pytest_cache"}
# The operator CLI runs on people's machines, never in a function: keeping it out of the zips
# means a CLI change does not redeploy every function.
_NOT_DEPLOYED = ("cli/",)
# What the locks are resolved for: the runtime Terraform deploys (`python312`, x86_64 Linux).
LOCK_PYTHON_VERSION = "3.12"
LOCK_PLATFORM = "x86_64-manylinux_2_28"
LOCK_FILE_NAME = "requirements.txt"
LOCK_COMMAND = "python -m srp_bundle.build --lock"
_INPUTS_LINE = re.compile(r"^# inputs-sha256: ([0-9a-f]{64})$", re.MULTILINE)


def function_names(functions_dir: Path) -> list[str]:
    """Every deployable function: a folder under functions/ with a main.py."""
    return sorted(p.parent.name for p in functions_dir.glob("*/main.py"))


def requirements_for(function_name: str, pyproject_path: Path) -> list[str]:
    """The function's pinned-by-range requirements, read from pyproject.toml."""
    project = tomllib.loads(pyproject_path.read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in EXTRAS_BY_FUNCTION.get(function_name, ()):
        requirements += project["optional-dependencies"][extra]
    return sorted(requirements, key=str.lower)


def lock_path(function_name: str, repo_root: Path = REPO_ROOT) -> Path:
    """Where a function's lock lives: beside its main.py, as the runtime expects it."""
    return repo_root / "functions" / function_name / LOCK_FILE_NAME


def lock_inputs_digest(function_name: str, pyproject_path: Path) -> str:
    """sha256 of everything a lock is resolved from: the function's ranges and the target."""
    inputs = {
        "requirements": requirements_for(function_name, pyproject_path),
        "python": LOCK_PYTHON_VERSION,
        "platform": LOCK_PLATFORM,
    }
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


def lock_problem(function_name: str, repo_root: Path = REPO_ROOT) -> str | None:
    """Why the function's lock cannot be deployed (missing, stale), or None if it is fresh."""
    path = lock_path(function_name, repo_root)
    if not path.is_file():
        return f"{path.relative_to(repo_root)} is missing; run `{LOCK_COMMAND}`"
    recorded = _INPUTS_LINE.search(path.read_text())
    expected = lock_inputs_digest(function_name, repo_root / "pyproject.toml")
    if recorded is None or recorded.group(1) != expected:
        return (
            f"{path.relative_to(repo_root)} was not generated from the current pyproject.toml; "
            f"run `{LOCK_COMMAND}` and commit the result"
        )
    return None


def write_lock(function_name: str, repo_root: Path = REPO_ROOT, uv: str = "uv") -> Path:
    """Resolve the function's requirements to exact versions with hashes (needs uv, PyPI)."""
    pyproject = repo_root / "pyproject.toml"
    requirements = requirements_for(function_name, pyproject)
    with tempfile.TemporaryDirectory() as work:
        # A fixed relative input name keeps the "# via" annotations free of temp paths.
        (Path(work) / "requirements.in").write_text("\n".join(requirements) + "\n")
        compiled = subprocess.run(
            [
                uv,
                "pip",
                "compile",
                "requirements.in",
                "--python-version",
                LOCK_PYTHON_VERSION,
                "--python-platform",
                LOCK_PLATFORM,
                "--generate-hashes",
                "--no-header",
                "--quiet",
            ],
            cwd=work,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    header = (
        f"# Locked requirements of {function_name}: exact versions with hashes; do not edit.\n"
        f"# Resolved for CPython {LOCK_PYTHON_VERSION} on {LOCK_PLATFORM} (Cloud Functions"
        " python312)\n"
        f"# from pyproject.toml: {', '.join(requirements)}\n"
        f"# inputs-sha256: {lock_inputs_digest(function_name, pyproject)}\n"
        f"# Regenerate with: {LOCK_COMMAND}\n"
    )
    path = lock_path(function_name, repo_root)
    path.write_text(header + compiled)
    return path


def _source_files(root: Path) -> list[Path]:
    return sorted(
        path
        for path in root.rglob("*")
        if path.is_file()
        and not _SKIPPED.intersection(path.relative_to(root).parts)
        and path.suffix != ".pyc"
    )


def assemble(function_name: str, out_dir: Path, repo_root: Path = REPO_ROOT) -> Path:
    """Write `out_dir/<name>/` (the deploy folder) and `out_dir/<name>.zip`; return the zip."""
    function_dir = repo_root / "functions" / function_name
    if not (function_dir / "main.py").is_file():
        raise SystemExit(f"no function named {function_name!r} (expected {function_dir}/main.py)")
    staging = out_dir / function_name
    if staging.exists():
        shutil.rmtree(staging)
    problem = lock_problem(function_name, repo_root)
    if problem is not None:
        raise SystemExit(f"cannot build {function_name}: {problem}")
    staging.mkdir(parents=True)
    entries: dict[str, bytes] = {}
    for path in _source_files(function_dir):
        entries[path.relative_to(function_dir).as_posix()] = path.read_bytes()
    for path in _source_files(PACKAGE_DIR):
        relative = path.relative_to(PACKAGE_DIR).as_posix()
        if not relative.startswith(_NOT_DEPLOYED):
            entries[f"srp_bundle/{relative}"] = path.read_bytes()
    # The lock (copied with the function's folder above) is what the runtime installs.
    entries["requirements.txt"] = lock_path(function_name, repo_root).read_bytes()

    zip_path = out_dir / f"{function_name}.zip"
    with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(entries):
            target = staging / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(entries[name])
            info = zipfile.ZipInfo(name, date_time=_ZIP_TIMESTAMP)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, entries[name])
    return zip_path


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file (the name Terraform gives the uploaded source object)."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: build one, several or all functions."""
    parser = argparse.ArgumentParser(prog="srp-bundle-build", description=__doc__)
    parser.add_argument("functions", nargs="*", help="function names (default: all)")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "build" / "functions")
    parser.add_argument(
        "--lock", action="store_true", help="regenerate the locks from pyproject.toml (uv, PyPI)"
    )
    args = parser.parse_args(argv)
    names = args.functions or function_names(REPO_ROOT / "functions")
    if args.lock:
        uv = shutil.which("uv") or str(Path(sys.executable).with_name("uv"))
        for name in names:
            print(f"{name}: {write_lock(name, uv=uv).relative_to(REPO_ROOT)}")
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    for name in names:
        zip_path = assemble(name, args.out)
        print(f"{name}: {zip_path} sha256={sha256_of(zip_path)[:16]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
