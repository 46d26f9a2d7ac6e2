"""Assemble each function's deploy folder and zip: main.py + this package + its lock.

Run `python -m srp_bundle.build` (or `srp-bundle-build`). Version ranges live in
pyproject.toml; each function's `functions/<name>/requirements.txt` locks them to exact
versions with hashes for the Cloud Functions runtime, and records a digest of its
inputs, so a lock that no longer matches pyproject.toml is refused here and fails the
tests (no network needed to tell). The toolchain that builds and tests them is locked the
same way, for CPython 3.11 on x86_64 Linux: `requirements/build.lock` (pyproject's build
backend), `requirements/dev.lock` (its dependencies and dev extra) and
`requirements/checkov.lock` (from `requirements/checkov.in`), installed by scripts/bootstrap
in hash-checking mode. `python -m srp_bundle.build --lock [NAME...]`
regenerates locks (needs `uv` and the package index). Zips are byte-for-byte reproducible, so their
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
from dataclasses import dataclass
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
# What the function locks are resolved for: the runtime Terraform deploys (`python312`, x86_64).
LOCK_PYTHON_VERSION = "3.12"
LOCK_PLATFORM = "x86_64-manylinux_2_28"
LOCK_FILE_NAME = "requirements.txt"
LOCK_COMMAND = "python -m srp_bundle.build --lock"
# What the toolchain locks are resolved for: the machines that run scripts/bootstrap, CI's among
# them (CPython 3.11 on x86_64 Debian 12/13; glibc 2.36 and newer run manylinux_2_28 wheels).
TOOLCHAIN_PYTHON_VERSION = "3.11"
TOOLCHAIN_PLATFORM = "x86_64-manylinux_2_28"
TOOLCHAIN_LOCKS = ("build", "dev", "checkov")
_CHECKOV_INPUT = "requirements/checkov.in"
_INPUTS_LINE = re.compile(r"^# inputs-sha256: ([0-9a-f]{64})$", re.MULTILINE)


@dataclass(frozen=True)
class LockTarget:
    """One lock file: the ranges it is resolved from, for which interpreter, and where it lives."""

    name: str
    requirements: list[str]
    python_version: str
    platform: str
    relative_path: str
    purpose: str


def function_names(functions_dir: Path) -> list[str]:
    """Every deployable function: a folder under functions/ with a main.py."""
    return sorted(p.parent.name for p in functions_dir.glob("*/main.py"))


def lock_names(repo_root: Path = REPO_ROOT) -> list[str]:
    """Every lock of the repository: one per function, then the toolchain's."""
    return [*function_names(repo_root / "functions"), *TOOLCHAIN_LOCKS]


def requirements_for(function_name: str, pyproject_path: Path) -> list[str]:
    """The function's pinned-by-range requirements, read from pyproject.toml."""
    project = tomllib.loads(pyproject_path.read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in EXTRAS_BY_FUNCTION.get(function_name, ()):
        requirements += project["optional-dependencies"][extra]
    return sorted(requirements, key=str.lower)


def dev_requirements(pyproject_path: Path) -> list[str]:
    """What `pip install --no-deps -e .` leaves to the dev lock: the dependencies and dev extra.

    The extra's references to the project itself (`srp-render-bundle[images]`) become the named
    extras' ranges.
    """
    project = tomllib.loads(pyproject_path.read_text())["project"]
    own_name = _normalized(project["name"])
    extras = project["optional-dependencies"]
    requirements = set(project["dependencies"])
    pending, seen = ["dev"], set()
    while pending:
        extra = pending.pop()
        seen.add(extra)
        for requirement in extras[extra]:
            name, _, rest = requirement.partition("[")
            if _normalized(name) != own_name:
                requirements.add(requirement)
                continue
            named = {part.strip() for part in rest.rstrip("]").split(",") if part.strip()}
            pending += sorted(named - seen)
    return sorted(requirements, key=str.lower)


def lock_target(name: str, repo_root: Path = REPO_ROOT) -> LockTarget:
    """The lock called `name`: a function's, or the toolchain's `build`, `dev` or `checkov`."""
    pyproject = repo_root / "pyproject.toml"
    if name == "build":
        # Installed first, wheels only: the sdists of the other locks and our editable install
        # are then built with it, without build isolation (which would fetch unlocked backends).
        return LockTarget(
            name="build",
            requirements=sorted(
                tomllib.loads(pyproject.read_text())["build-system"]["requires"], key=str.lower
            ),
            python_version=TOOLCHAIN_PYTHON_VERSION,
            platform=TOOLCHAIN_PLATFORM,
            relative_path="requirements/build.lock",
            purpose="the toolchain's build backend (scripts/bootstrap)",
        )
    if name == "dev":
        return LockTarget(
            name="dev",
            requirements=dev_requirements(pyproject),
            python_version=TOOLCHAIN_PYTHON_VERSION,
            platform=TOOLCHAIN_PLATFORM,
            relative_path="requirements/dev.lock",
            purpose="the dev and CI toolchain (.venv)",
        )
    if name == "checkov":
        lines = (repo_root / _CHECKOV_INPUT).read_text().splitlines()
        return LockTarget(
            name="checkov",
            requirements=sorted(
                (line.strip() for line in lines if line.strip() and not line.startswith("#")),
                key=str.lower,
            ),
            python_version=TOOLCHAIN_PYTHON_VERSION,
            platform=TOOLCHAIN_PLATFORM,
            relative_path="requirements/checkov.lock",
            purpose="checkov's virtualenv (.venv-checkov)",
        )
    return LockTarget(
        name=name,
        requirements=requirements_for(name, pyproject),
        python_version=LOCK_PYTHON_VERSION,
        platform=LOCK_PLATFORM,
        relative_path=f"functions/{name}/{LOCK_FILE_NAME}",
        purpose=f"{name} (Cloud Functions python312)",
    )


def lock_path(name: str, repo_root: Path = REPO_ROOT) -> Path:
    """Where a lock lives: a function's beside its main.py, as the runtime expects it."""
    return repo_root / lock_target(name, repo_root).relative_path


def lock_inputs_digest(target: LockTarget) -> str:
    """sha256 of everything a lock is resolved from: its ranges and the target interpreter."""
    inputs = {
        "requirements": target.requirements,
        "python": target.python_version,
        "platform": target.platform,
    }
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


def lock_problem(name: str, repo_root: Path = REPO_ROOT) -> str | None:
    """Why the lock cannot be used (missing, stale), or None if it is fresh."""
    target = lock_target(name, repo_root)
    path = repo_root / target.relative_path
    if not path.is_file():
        return f"{target.relative_path} is missing; run `{LOCK_COMMAND} {name}`"
    recorded = _INPUTS_LINE.search(path.read_text())
    if recorded is None or recorded.group(1) != lock_inputs_digest(target):
        return (
            f"{target.relative_path} was not generated from the current pyproject.toml "
            f"(or requirements/*.in); run `{LOCK_COMMAND} {name}` and commit the result"
        )
    return None


def write_lock(name: str, repo_root: Path = REPO_ROOT, uv: str = "uv") -> Path:
    """Resolve a lock's ranges to exact versions with hashes (needs uv and the package index)."""
    target = lock_target(name, repo_root)
    with tempfile.TemporaryDirectory() as work:
        # A fixed relative input name keeps the "# via" annotations free of temp paths.
        (Path(work) / "requirements.in").write_text("\n".join(target.requirements) + "\n")
        compiled = subprocess.run(
            [
                uv,
                "pip",
                "compile",
                "requirements.in",
                "--python-version",
                target.python_version,
                "--python-platform",
                target.platform,
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
        f"# Locked requirements of {target.purpose}: exact versions with hashes; do not edit.\n"
        f"# Resolved for CPython {target.python_version} on {target.platform}\n"
        f"# from: {', '.join(target.requirements)}\n"
        f"# inputs-sha256: {lock_inputs_digest(target)}\n"
        f"# Regenerate with: {LOCK_COMMAND} {name}\n"
    )
    path = repo_root / target.relative_path
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + compiled)
    return path


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).strip().lower()


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
    """Command line: build one, several or all functions, or regenerate locks."""
    parser = argparse.ArgumentParser(prog="srp-bundle-build", description=__doc__)
    parser.add_argument(
        "names",
        nargs="*",
        help="function names; with --lock or --check also build, dev, checkov (default: all)",
    )
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "build" / "functions")
    parser.add_argument(
        "--lock",
        action="store_true",
        help="regenerate the locks from pyproject.toml and requirements/*.in (uv, PyPI)",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="only check that the locks match their inputs (offline); exit 1 naming stale ones",
    )
    args = parser.parse_args(argv)
    if args.check:
        names = args.names or lock_names(REPO_ROOT)
        problems = [p for p in (lock_problem(name, REPO_ROOT) for name in names) if p is not None]
        for problem in problems:
            print(problem, file=sys.stderr)
        return 1 if problems else 0
    if args.lock:
        uv = shutil.which("uv") or str(Path(sys.executable).with_name("uv"))
        for name in args.names or lock_names():
            print(f"{name}: {write_lock(name, uv=uv).relative_to(REPO_ROOT)}")
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.names or function_names(REPO_ROOT / "functions"):
        zip_path = assemble(name, args.out)
        print(f"{name}: {zip_path} sha256={sha256_of(zip_path)[:16]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
