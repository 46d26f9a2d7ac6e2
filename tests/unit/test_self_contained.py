"""The repo stands alone: no tracked file reads or links anything outside the repo root.

A clone in any folder must pass the suite (`.ci/run` runs it from a clone with no sibling
folder). This scans every tracked text file for the ways a path escapes: relative paths
climbing above the root, `Path(__file__)` or `dirname "$0"` chains climbing as far, absolute
paths of a developer's machine, the sibling folder the project started beside, and
Markdown links to files the repo does not have.
"""

from __future__ import annotations

import re
import subprocess
from functools import cache
from pathlib import Path, PurePosixPath

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]

THIS_FILE = "tests/unit/test_self_contained.py"  # its examples of escapes are data

# A path starting `../`: relative to the file that holds it (Markdown, Terraform, docs).
_RELATIVE_PATH = re.compile(r"(?<![\w./])(?:\.\./)+[^\s)\]\"'`<>,;]*")
# `Path(__file__).resolve().parent.parent` (the file's folder's parent) and `.parents[N]`.
_PATH_OF_FILE = re.compile(
    r"Path\(__file__\)(?:\.resolve\(\))?(?P<parents>(?:\.parent\b)*)(?:\.parents\[(?P<n>\d+)\])?"
)
_DIRNAME_OF_SCRIPT = re.compile(r"dirname \"\$(?:0|\{BASH_SOURCE\[0\]\})\"\)(?P<up>(?:/\.\.)*)")
# The folder beside the repo this project was started from, and the files it holds.
_OUTSIDE_NAMES = re.compile(
    r"\.\./shared\b(?!/srp_bundle)|\bshared/(?:seed|fixtures|hooks)\b"
    r"|\b(?:design|style|srp-task-api)\.md\b"
)
# Absolute paths of a developer's machine.
_MACHINE_PATH = re.compile(r"(?<![\w.:/-])/(?:work|home|Users)/[\w.-]")
_MARKDOWN_LINK = re.compile(r"\[[^\]]*\]\((?P<target>[^)\s]+)\)")


@cache
def _tracked_names() -> frozenset[str]:
    """Every tracked file, by its path from the repo root."""
    listing = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO_ROOT, capture_output=True, check=True
    ).stdout.decode()
    return frozenset(filter(None, listing.split("\0")))


@cache
def _tracked_text_files() -> dict[str, str]:
    """Every tracked file that is text, by its path from the repo root."""
    files: dict[str, str] = {}
    for name in sorted(_tracked_names()):
        path = REPO_ROOT / name
        if not path.is_file():
            continue  # deleted in the work tree, not yet committed
        content = path.read_bytes()
        if b"\0" not in content:
            files[name] = content.decode("utf-8", errors="replace")
    return files


def _escapes(base: PurePosixPath, relative: str) -> bool:
    """Whether `relative`, read from the folder `base` of the repo, leaves the repo root."""
    depth = len(base.parts)
    for part in PurePosixPath(relative).parts:
        depth += -1 if part == ".." else (0 if part == "." else 1)
        if depth < 0:
            return True
    return False


def _findings(name: str, text: str) -> list[str]:
    """Each way `text` (the file `name`) points outside the repo, as `name:line: what`."""
    folder = PurePosixPath(name).parent
    levels_to_root = len(folder.parts)
    found: list[str] = []
    for number, line in enumerate(text.splitlines(), 1):
        where = f"{name}:{number}"
        for match in _RELATIVE_PATH.finditer(line):
            if _escapes(folder, match.group()):
                found.append(f"{where}: {match.group()!r} climbs above the repo root")
        for match in _PATH_OF_FILE.finditer(line):
            # Levels above the file itself; one of them is the file's own folder.
            up = match.group("parents").count(".parent")
            if match.group("n") is not None:
                up += int(match.group("n")) + 1
            if up - 1 > levels_to_root:
                found.append(f"{where}: {match.group()!r} climbs above the repo root")
        for match in _DIRNAME_OF_SCRIPT.finditer(line):
            if match.group("up").count("..") > levels_to_root:
                found.append(f"{where}: {match.group()!r} climbs above the repo root")
        for match in _OUTSIDE_NAMES.finditer(line):
            found.append(f"{where}: {match.group()!r} names a file outside the repo")
        for match in _MACHINE_PATH.finditer(line):
            found.append(f"{where}: {match.group()!r}... is a path on one machine")
        if name.endswith(".md"):
            found.extend(f"{where}: {why}" for why in _broken_links(folder, line))
    return found


def _broken_links(folder: PurePosixPath, line: str) -> list[str]:
    """Markdown links to a path that is not a tracked file or folder of the repo."""
    problems = []
    for match in _MARKDOWN_LINK.finditer(line):
        target = match.group("target").split("#", 1)[0]
        if not target or re.match(r"^[a-z][a-z0-9+.-]*:", target):
            continue  # an anchor in the same page, or a URL (https:, mailto:)
        if target.startswith("/") or _escapes(folder, target):
            problems.append(f"link {target!r} leaves the repo")
        elif not _in_repo(str(PurePosixPath(folder, target))):
            problems.append(f"link {target!r} is not a file of the repo")
    return problems


def _in_repo(path: str) -> bool:
    """Whether `path` (from the repo root, `..` inside it allowed) is a tracked file or folder."""
    parts: list[str] = []
    for part in PurePosixPath(path).parts:
        if part == "..":
            parts.pop()
        elif part != ".":
            parts.append(part)
    normal = "/".join(parts)
    tracked = _tracked_names()
    return normal in tracked or any(name.startswith(normal + "/") for name in tracked)


def test_no_tracked_file_reads_or_links_outside_the_repo() -> None:
    files = _tracked_text_files()
    assert "README.md" in files, "git ls-files must list the repo"
    findings = [
        finding
        for name, text in files.items()
        if name != THIS_FILE
        for finding in _findings(name, text)
    ]
    assert not findings, "paths outside the repo:\n" + "\n".join(findings)


@pytest.mark.parametrize(
    ("name", "line"),
    [
        ("README.md", "[SRP](../shared/seed/api.md)"),
        ("docs/x.md", "see [the API](../../outside.md)"),
        ("docs/x.md", "see [the API](missing.md)"),
        ("docs/x.md", "[abs](/etc/passwd)"),
        ("tests/unit/test_x.py", 'F = Path(__file__).resolve().parents[3] / "fixtures"'),
        ("tests/unit/test_x.py", "F = Path(__file__).resolve().parent.parent.parent.parent"),
        ("tests/unit/test_x.py", '"""Shapes in ../shared/fixtures/cloudevents."""'),
        ("docs/x.md", "as design.md says"),
        (".ci/run", 'cd "$(dirname "$0")/../.."'),
        ("scripts/x", "cp /work/shared/a ."),
        ("terraform/environments/dev/variables.tf", 'default = "../../../../build"'),
    ],
)
def test_each_kind_of_escape_is_found(name: str, line: str) -> None:
    assert _findings(name, line), line


@pytest.mark.parametrize(
    ("name", "line"),
    [
        ("README.md", "[deploy](docs/deploy.md#2-build-the-function-zips)"),
        ("docs/x.md", "[0001](decisions/0001-exactly-one-task-per-request.md)"),
        ("docs/x.md", "[up](../README.md) and [web](https://example.com/a/../../b)"),
        ("terraform/environments/dev/main.tf", 'source = "../../modules/srp_bundle"'),
        ("terraform/environments/dev/variables.tf", 'default = "../../../build/functions"'),
        ("tests/unit/test_x.py", "REPO = Path(__file__).resolve().parents[2]"),
        ("tests/unit/test_x.py", 'bad = "render/c/../../secrets/key.png"'),
        ("bench/x.py", 'Path(__file__).resolve().parents[1] / "shared"'),
        ("scripts/test", 'cd "$(dirname "$0")/.."'),
    ],
)
def test_paths_inside_the_repo_pass(name: str, line: str) -> None:
    assert _findings(name, line) == []
