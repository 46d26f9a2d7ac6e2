"""The build step: reproducible deploy zips that install each function's hashed lock."""

from __future__ import annotations

import os
import re
import shutil
import tomllib
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from srp_bundle import build

FUNCTIONS = build.function_names(build.REPO_ROOT / "functions")
LOCKS = build.lock_names()
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+) \\$")


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
            requirements = archive.read("requirements.txt").decode()
        assert requirements == build.lock_path(name).read_text()  # the lock, verbatim
        pins = _pins(requirements)
        assert {"functions-framework", "google-cloud-firestore"} <= set(pins)
        # Only post-processing ships an image library.
        assert ("pyvips" in pins) == (name == "postprocess_render")


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


def _pins(lock_text: str) -> dict[str, str]:
    """name -> exact version of every requirement in a lock."""
    pins = {}
    for line in lock_text.splitlines():
        if line and not line.startswith((" ", "#")):
            match = _PIN.match(line)
            assert match, f"not an exact pin with hashes: {line!r}"
            pins[match.group(1).lower().replace("_", "-")] = match.group(2)
    return pins


def test_the_toolchain_is_locked_too() -> None:
    assert {"build", "dev", "checkov"} <= set(LOCKS) and set(FUNCTIONS) <= set(LOCKS)


@pytest.mark.parametrize("name", LOCKS)
def test_each_lock_was_generated_from_the_current_pyproject(name: str) -> None:
    # Offline: the lock records a digest of its inputs. Fix: `python -m srp_bundle.build --lock`.
    assert build.lock_problem(name) is None, build.lock_problem(name)


@pytest.mark.parametrize("name", LOCKS)
def test_each_lock_pins_every_package_with_hashes_within_the_pyproject_ranges(name: str) -> None:
    text = build.lock_path(name).read_text()
    pins = _pins(text)
    # Every pinned requirement is followed by at least one sha256 hash line.
    blocks = re.split(r"\n(?=[A-Za-z0-9])", text.split("\n", 5)[-1])
    for block in blocks:
        if block.strip() and not block.startswith("#"):
            assert "--hash=sha256:" in block, f"no hash for {block.splitlines()[0]}"
    for requirement in map(Requirement, build.lock_target(name).requirements):
        version = pins.get(requirement.name.lower())
        assert version is not None, f"{requirement.name} is not locked for {name}"
        assert requirement.specifier.contains(version), f"{requirement} locked at {version}"


def test_a_lock_that_disagrees_with_pyproject_is_refused_by_the_build(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    shutil.copytree(build.REPO_ROOT / "functions" / "submit_task", root / "functions/submit_task")
    pyproject = (build.REPO_ROOT / "pyproject.toml").read_text()
    (root / "pyproject.toml").write_text(pyproject)
    assert build.lock_problem("submit_task", root) is None

    (root / "pyproject.toml").write_text(pyproject.replace('"httpx>=0.27,<1"', '"httpx>=0.28,<1"'))

    problem = build.lock_problem("submit_task", root)
    assert problem is not None and "python -m srp_bundle.build --lock" in problem
    with pytest.raises(SystemExit, match=r"not generated from the current pyproject\.toml"):
        build.assemble("submit_task", tmp_path / "out", repo_root=root)
    (root / "functions/submit_task/requirements.txt").unlink()
    assert "missing" in (build.lock_problem("submit_task", root) or "")


def _copy_toolchain_inputs(root: Path) -> str:
    (root / "requirements").mkdir(parents=True)
    for name in ("build.lock", "dev.lock", "checkov.lock", "checkov.in"):
        shutil.copy(build.REPO_ROOT / "requirements" / name, root / "requirements" / name)
    pyproject = (build.REPO_ROOT / "pyproject.toml").read_text()
    (root / "pyproject.toml").write_text(pyproject)
    return pyproject


@pytest.mark.parametrize(
    ("edited", "stale"),
    [
        (("pyproject.toml", '"ruff>=0.6"', '"ruff>=0.7"'), {"dev"}),  # the dev extra
        (("pyproject.toml", '"httpx>=0.27,<1"', '"httpx>=0.28,<1"'), {"dev"}),  # a dependency
        (("pyproject.toml", '"pillow>=10"', '"pillow>=10",\n    "six"'), {"dev"}),  # added
        (
            ("pyproject.toml", 'requires = ["setuptools>=68"]', 'requires = ["setuptools>=69"]'),
            {"build"},
        ),
        (("requirements/checkov.in", "checkov>=3.2,<4", "checkov>=3.3,<4"), {"checkov"}),
    ],
)
def test_a_toolchain_lock_whose_inputs_moved_is_stale(
    tmp_path: Path, edited: tuple[str, str, str], stale: set[str]
) -> None:
    _copy_toolchain_inputs(tmp_path)
    assert {name: build.lock_problem(name, tmp_path) for name in build.TOOLCHAIN_LOCKS} == {
        name: None for name in build.TOOLCHAIN_LOCKS
    }
    file_name, old, new = edited
    path = tmp_path / file_name
    assert old in path.read_text()
    path.write_text(path.read_text().replace(old, new))

    problems = {name: build.lock_problem(name, tmp_path) for name in build.TOOLCHAIN_LOCKS}

    assert {name for name, problem in problems.items() if problem} == stale
    for name in stale:
        assert f"python -m srp_bundle.build --lock {name}" in str(problems[name])


def test_the_check_command_names_a_stale_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _copy_toolchain_inputs(tmp_path)
    monkeypatch.setattr(build, "REPO_ROOT", tmp_path)
    assert build.main(["--check", "dev", "checkov"]) == 0
    (tmp_path / "requirements/checkov.in").write_text("checkov>=3.3,<4\n")

    assert build.main(["--check", "dev", "checkov"]) == 1
    assert "requirements/checkov.lock was not generated" in capsys.readouterr().err


def test_dev_requirements_expand_the_projects_own_extras(tmp_path: Path) -> None:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(
        '[build-system]\nrequires = ["setuptools>=68"]\n'
        '[project]\nname = "srp-render-bundle"\ndependencies = ["httpx>=0.27"]\n'
        "[project.optional-dependencies]\n"
        'images = ["pyvips>=3"]\n'
        'dev = ["srp_render_bundle[images]", "pytest>=8"]\n'
    )
    assert build.dev_requirements(pyproject) == ["httpx>=0.27", "pytest>=8", "pyvips>=3"]


def test_bootstrap_installs_the_toolchain_only_from_the_locks_with_hashes() -> None:
    script = (build.REPO_ROOT / "scripts" / "bootstrap").read_text()
    installs = [
        " ".join(line.split())
        for line in script.replace("\\\n", " ").splitlines()
        if "pip install" in line and not line.lstrip().startswith("#")
    ]
    assert installs, "scripts/bootstrap installs nothing with pip?"
    for line in installs:
        from_lock = "--require-hashes" in line and " -r " in line
        ours = line.endswith("--no-deps --no-build-isolation -e .")
        assert from_lock or ours, f"an install that is not from a hashed lock: {line}"
        # Build isolation would fetch build backends from the index, unpinned.
        assert "--no-build-isolation" in line or "--only-binary :all:" in line, line
    assert "--upgrade" not in script and "install -q checkov" not in script
    # The virtualenvs are rebuilt when a lock changes: the install stamp is a digest of them.
    assert 'stamp="$venv/.installed-$(cat requirements/build.lock "$lock"' in script
    for lock in ("requirements/dev.lock", "requirements/checkov.lock"):
        assert (
            f"install_locked_venv .venv{'-checkov' if 'checkov' in lock else ''} {lock}" in script
        )


def test_floors_are_at_least_the_versions_whose_apis_we_call() -> None:
    # pyvips.block_untrusted_set appeared in 2.2.1; loading pyvips-binary needs pyvips 3.
    images = {Requirement(r).name: Requirement(r) for r in _optional("images")}
    assert not images["pyvips"].specifier.contains("2.2.3")
    assert images["pyvips"].specifier.contains("3.0.0")


def _pyproject() -> Path:
    return build.REPO_ROOT / "pyproject.toml"


def _optional(extra: str) -> list[str]:
    project = tomllib.loads(_pyproject().read_text())["project"]
    return list(project["optional-dependencies"][extra])
