"""The build step: reproducible deploy zips with requirements generated from pyproject.toml."""

from __future__ import annotations

import os
import shutil
import zipfile
from pathlib import Path

from srp_bundle import build


def test_every_function_zip_holds_its_handler_the_package_and_requirements(tmp_path: Path) -> None:
    names = build.function_names(build.REPO_ROOT / "functions")
    assert set(names) >= {"submit_task", "ingest_webhook", "reconcile_tasks", "record_dead_letter"}
    for name in names:
        with zipfile.ZipFile(build.assemble(name, tmp_path)) as archive:
            files = set(archive.namelist())
            assert "main.py" in files
            assert "srp_bundle/task_state.py" in files and "srp_bundle/py.typed" in files
            assert not any("__pycache__" in f for f in files)
            assert not any(f.startswith("srp_bundle/cli/") for f in files)
            requirements = archive.read("requirements.txt").decode().splitlines()
        assert any(r.startswith("functions-framework") for r in requirements)
        assert any(r.startswith("google-cloud-firestore") for r in requirements)
        # Only post-processing ships an image library.
        assert any(r.startswith("pyvips") for r in requirements) == (name == "postprocess_render")


def test_zips_are_reproducible_so_their_hash_changes_only_with_the_code(tmp_path: Path) -> None:
    sources = [
        *(build.REPO_ROOT / "functions" / "submit_task").rglob("*"),
        *build.PACKAGE_DIR.rglob("*"),
    ]
    times = {path: (path.stat().st_atime_ns, path.stat().st_mtime_ns) for path in sources}
    first = build.sha256_of(build.assemble("submit_task", tmp_path / "a"))
    try:
        # As a fresh checkout or an edit-and-revert leaves them: every file looks newer.
        for path, (atime, mtime) in times.items():
            os.utime(path, ns=(atime, mtime + 86_400 * 10**9))
        second = build.sha256_of(build.assemble("submit_task", tmp_path / "b"))
    finally:
        for path, recorded in times.items():
            os.utime(path, ns=recorded)
    assert first == second


def test_a_change_of_code_changes_the_zip_hash(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    shutil.copytree(build.REPO_ROOT / "functions" / "submit_task", root / "functions/submit_task")
    shutil.copy(build.REPO_ROOT / "pyproject.toml", root / "pyproject.toml")
    first = build.sha256_of(build.assemble("submit_task", tmp_path / "a", root))
    handler = root / "functions/submit_task/main.py"
    handler.write_text(handler.read_text() + "\n# changed\n")

    second = build.sha256_of(build.assemble("submit_task", tmp_path / "b", root))

    assert first != second


def test_requirements_come_from_pyproject(tmp_path: Path) -> None:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(
        '[project]\ndependencies = ["B>=1", "a<2"]\n'
        '[project.optional-dependencies]\nimages = ["pyvips>=2"]\n'
    )
    assert build.requirements_for("submit_task", pyproject) == ["a<2", "B>=1"]
    assert build.requirements_for("postprocess_render", pyproject) == ["a<2", "B>=1", "pyvips>=2"]
