"""Assemble each function's deploy folder and zip: main.py + this package + requirements.txt.

Run `python -m srp_bundle.build` (or `srp-bundle-build`). Requirements come from
pyproject.toml, so versions have one source of truth; zips are byte-for-byte
reproducible, so their content hash changes only when the function really changed.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
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
    staging.mkdir(parents=True)
    entries: dict[str, bytes] = {}
    for path in _source_files(function_dir):
        entries[path.relative_to(function_dir).as_posix()] = path.read_bytes()
    for path in _source_files(PACKAGE_DIR):
        relative = path.relative_to(PACKAGE_DIR).as_posix()
        if not relative.startswith(_NOT_DEPLOYED):
            entries[f"srp_bundle/{relative}"] = path.read_bytes()
    requirements = requirements_for(function_name, repo_root / "pyproject.toml")
    entries["requirements.txt"] = ("\n".join(requirements) + "\n").encode()

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
    args = parser.parse_args(argv)
    names = args.functions or function_names(REPO_ROOT / "functions")
    args.out.mkdir(parents=True, exist_ok=True)
    for name in names:
        zip_path = assemble(name, args.out)
        print(f"{name}: {zip_path} sha256={sha256_of(zip_path)[:16]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
