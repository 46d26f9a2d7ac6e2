"""Asset upload memory: peak RSS of `srp-bundle assets upload` and of the SRP emulator vs size.

Usage: .venv/bin/python -m bench.assets_upload [--size-mb 1024] [--baseline-mb 32]

Generates two ZIPs of incompressible data (stored, like a studio's already compressed
textures), the baseline one small, then uploads each with the real CLI in its own process
(`python -m srp_bundle.cli assets upload`) to the SRP emulator. The CLI's peak RSS is its
`ru_maxrss` (os.wait4); the emulator's is its `VmHWM`, read after the baseline upload and
again after the large one (the high-water mark only grows, so the second reading includes
everything the large upload cost). Memory is flat when the large upload's peaks are about
the small one's, whatever the archive size. Both uploads are checked on the emulator's
side: size and SHA-256 of what it stored.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

from bench.common import SAMPLE_COLLECTION_ID, Row, Section
from local_stack.emulators import GcsEmulator
from local_stack.srp_emulator import SrpEmulatorProcess
from srp_bundle.asset_archive import file_sha256

API_KEY = "bench-assets-key"
MIB = 1024 * 1024
# Target: the large upload's peak RSS at most this many times the small one's.
FLAT_TARGET = 1.2


def generate_archive(path: Path, size_mb: int) -> Path:
    """A stored ZIP of `size_mb` MiB of random bytes in 64 MiB members, written in 1 MiB chunks."""
    remaining = size_mb * MIB
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        index = 0
        while remaining > 0:
            member = min(64 * MIB, remaining)
            info = zipfile.ZipInfo(f"textures/t{index:03d}.bin", date_time=(1980, 1, 1, 0, 0, 0))
            with archive.open(info, "w", force_zip64=True) as target:
                written = 0
                while written < member:
                    chunk = os.urandom(min(MIB, member - written))
                    target.write(chunk)
                    written += len(chunk)
            remaining -= member
            index += 1
        archive.writestr("scene.blend", b"scene")
    return path


def generate_folder(path: Path, size_mb: int) -> Path:
    """A resource folder of `size_mb` MiB of random bytes in 64 MiB files."""
    (path / "textures").mkdir(parents=True)
    (path / "scene.blend").write_bytes(b"scene")
    remaining, index = size_mb * MIB, 0
    while remaining > 0:
        member = min(64 * MIB, remaining)
        with (path / "textures" / f"t{index:03d}.bin").open("wb") as target:
            for _ in range(member // MIB):
                target.write(os.urandom(MIB))
        remaining -= member
        index += 1
    return path


def vm_hwm_mb(pid: int) -> float:
    """A live process's peak resident set (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for process {pid}")


def upload(archive: Path, srp: SrpEmulatorProcess, *extra: str) -> tuple[float, float, str]:
    """Run the CLI on `archive`; its peak RSS (MB), wall seconds and the asset id."""
    env = {**os.environ, "SRP_API_URL": srp.url, "SRP_API_KEY": API_KEY}
    argv = [sys.executable, "-m", "srp_bundle.cli", "assets", "upload"]
    argv += ["--collection", SAMPLE_COLLECTION_ID, str(archive), *extra]
    started = time.monotonic()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        process = subprocess.Popen(argv, env=env, stdout=out, stderr=err)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        elapsed = time.monotonic() - started
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    if process.returncode != 0:
        raise RuntimeError(f"upload failed ({process.returncode}): {stderr[-2000:]}")
    asset_id = stdout.strip().splitlines()[-1].removeprefix("asset id: ")  # or the dry-run line
    return usage.ru_maxrss / 1024, elapsed, asset_id


def run(
    *, size_mb: int, baseline_mb: int, log: Callable[[str], None], from_folder: bool = False
) -> Section:
    """Both uploads, measured; rows of the benchmark table (and zipping folders, if asked)."""
    section = Section("assets upload")
    with tempfile.TemporaryDirectory(prefix="bench-assets-") as work:
        work_dir = Path(work)
        log(f"  generating {baseline_mb} MiB and {size_mb} MiB archives...")
        small = generate_archive(work_dir / "small.zip", baseline_mb)
        large = generate_archive(work_dir / "large.zip", size_mb)
        with (
            GcsEmulator() as gcs,
            SrpEmulatorProcess(
                renders_bucket="bench-assets-renders",
                api_keys=[API_KEY],
                env={**gcs.env, "GOOGLE_CLOUD_PROJECT": "srp-bench"},
                extra_args=["--assets-dir", str(work_dir / "emulator")],
            ) as srp,
        ):
            assert srp.pid is not None
            idle_mb = vm_hwm_mb(srp.pid)
            measures = {}
            for name, archive in (("small", small), ("large", large)):
                log(f"  uploading {archive.stat().st_size / MIB:.0f} MiB...")
                cli_mb, seconds, asset_id = upload(archive, srp)
                (stored,) = srp.control.assets(id=asset_id)
                if stored["sha256"] != file_sha256(archive) or not stored["created"]:
                    raise RuntimeError(f"the emulator stored something else for {name}: {stored}")
                measures[name] = (cli_mb, vm_hwm_mb(srp.pid), seconds, archive.stat().st_size)
            if from_folder:
                small.unlink()
                large.unlink()
                for name, megabytes in (("small", baseline_mb), ("large", size_mb)):
                    log(f"  zipping a {megabytes} MiB folder (--dry-run)...")
                    folder = generate_folder(work_dir / f"folder-{name}", megabytes)
                    cli_mb, seconds, _ = upload(folder, srp, "--dry-run")
                    measures[f"folder-{name}"] = (cli_mb, 0.0, seconds, megabytes * MIB)
                    shutil.rmtree(folder)
    (cli_small, srp_small, _, bytes_small), (cli_large, srp_large, seconds, bytes_large) = (
        measures["small"],
        measures["large"],
    )
    size = f"{bytes_large / MIB:.0f} MiB"
    base = f"same, {bytes_small / MIB:.0f} MiB archive"
    section.rows += [
        Row(section.name, f"CLI peak RSS, {size} archive", cli_large, cli_small, "MB", base,
            target=FLAT_TARGET),
        Row(section.name, f"SRP emulator peak RSS after {size}", srp_large, srp_small, "MB",
            base, target=FLAT_TARGET),
        Row(section.name, f"upload throughput, {size} (check + sha256 + PUT)",
            bytes_large / MIB / seconds, None, "MiB/s"),
    ]  # fmt: skip
    if from_folder:
        (zip_small, _, _, _), (zip_large, _, zip_seconds, _) = (
            measures["folder-small"],
            measures["folder-large"],
        )
        section.rows += [
            Row(section.name, f"CLI peak RSS, zipping a {size} folder (--dry-run)", zip_large,
                zip_small, "MB", f"same, {baseline_mb} MiB folder", target=FLAT_TARGET),
            Row(section.name, f"zip throughput, {size} folder (deflate + check + sha256)",
                bytes_large / MIB / zip_seconds, None, "MiB/s"),
        ]  # fmt: skip
    section.notes.append(
        f"assets: archive {bytes_large / MIB:.0f} MiB vs CLI peak {cli_large:.0f} MB "
        f"({cli_large / (bytes_large / 1e6):.1%} of the archive); emulator idle "
        f"{idle_mb:.0f} MB, after both uploads {srp_large:.0f} MB; stored archives verified by "
        "size and SHA-256"
    )
    return section


def main() -> None:
    """Run and print the rows."""
    parser = argparse.ArgumentParser(prog="python -m bench.assets_upload", description=__doc__)
    parser.add_argument("--size-mb", type=int, default=1024, help="the large archive, MiB")
    parser.add_argument("--baseline-mb", type=int, default=32, help="the small archive, MiB")
    parser.add_argument(
        "--from-folder", action="store_true", help="also zip folders of both sizes (--dry-run)"
    )
    args = parser.parse_args()
    section = run(
        size_mb=args.size_mb,
        baseline_mb=args.baseline_mb,
        from_folder=args.from_folder,
        log=lambda message: print(message, file=sys.stderr, flush=True),
    )
    from bench.__main__ import table

    print(table([section], markdown=False))


if __name__ == "__main__":
    main()
