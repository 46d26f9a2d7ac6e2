"""The CLI's contact sheet in a real browser (Debian's headless Chromium).

Real derivatives of a PNG, a video, a sound and a GLB (made by post-processing, stored in
fake-gcs-server) go into the contact sheet; Chromium loads it. A copy of the page with a
probe script reports, after load, whether every image decoded and where it sits; a
screenshot of the same page at the same window size then shows each still and preview
is drawn (not blank).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import pyvips
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from local_stack import media_samples
from local_stack.emulators import GcsEmulator
from srp_bundle.cli._export import write_contact_sheet
from srp_bundle.derivative_store import store_derivatives
from srp_bundle.render_outputs import Limits, process_output_file
from srp_bundle.settings import parse_derivative_specs
from srp_bundle.task_state import State, TaskRecord

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("chromium") is None, reason="scripts/bootstrap installs it"),
]

WINDOW = (1200, 1600)
SPECS = parse_derivative_specs("256:webp,128:png")
PROBE = """
<script>
window.addEventListener("load", () => {
  for (const image of document.images) {
    const box = image.getBoundingClientRect();
    image.dataset.loaded = String(image.complete && image.naturalWidth > 0);
    image.dataset.natural = `${image.naturalWidth}x${image.naturalHeight}`;
    image.dataset.rect = JSON.stringify([box.left, box.top, box.width, box.height]);
  }
  document.body.dataset.probed = "yes";
});
</script>
"""


def _png() -> bytes:
    xy = pyvips.Image.xyz(400, 300)
    image = (xy[0] * 0.6).bandjoin([xy[1] * 0.8, xy[0] * 0 + 120]).cast("uchar")
    return bytes(image.copy(interpretation="srgb").pngsave_buffer())


SAMPLES = {
    "image": ("render.png", _png),
    "video": ("render.mp4", lambda: media_samples.video("mp4", black_lead_seconds=0.4)),
    "sound": ("render.wav", lambda: media_samples.sound("wav")),
    "model": ("scene.glb", lambda: media_samples.glb(meshes=3, nodes=4, materials=2)),
}


def completed_record(bucket: storage.Bucket, tmp_path: Path, kind: str) -> TaskRecord:
    """Post-process one sample file into the bucket; the record it would complete."""
    file_name, make = SAMPLES[kind]
    task_id = f"00000000-0000-4000-8000-00000000000{list(SAMPLES).index(kind)}"
    path = f"render/sheet/{task_id}/{file_name}"
    local = tmp_path / file_name
    local.write_bytes(make())
    processed = process_output_file(str(local), SPECS, Limits(10**8, 60, 60.0))
    written = store_derivatives(
        bucket,
        processed.derivatives,
        collection_name="sheet",
        task_id=task_id,
        source_bucket_name="renders",
        source_object_name=path,
        source_generation=1,
    )
    description = {**processed.description, "path": path, "generation": 1}
    return TaskRecord(
        request_id=f"sheet-{kind}",
        collection_id="c0ffee00-0000-4000-8000-000000000000",
        state=State.COMPLETED,
        task_id=task_id,
        output_files=[path],
        files=[description],
        derivatives=[item.as_record() for item in written],
        other_files=[] if processed.derivatives else [description],
    )


def chromium(page: Path, *arguments: str) -> str:
    """Run headless Chromium on a local page; its stdout."""
    result = subprocess.run(
        [
            "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--window-size={WINDOW[0]},{WINDOW[1]}",
            "--virtual-time-budget=10000",
            *arguments,
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_every_item_shows_its_picture_and_previews_play(
    gcs_emulator: GcsEmulator, tmp_path: Path
) -> None:
    client = storage.Client(
        project="test",
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options={"api_endpoint": gcs_emulator.url},
    )
    bucket = client.create_bucket(f"sheet-{tmp_path.name[-20:].lower().replace('_', '-')}")
    records = [completed_record(bucket, tmp_path, kind) for kind in SAMPLES]
    sheet = tmp_path / "sheet.html"

    assert write_contact_sheet(sheet, records, bucket) == 0

    probe = sheet.with_name("probe.html")
    probe.write_text(sheet.read_text().replace("</body>", PROBE + "</body>"))
    dom = chromium(probe, "--dump-dom")
    assert 'data-probed="yes"' in dom
    images = [_attributes(tag) for tag in re.findall(r"<img [^>]*>", dom)]
    by_class: dict[str, list[dict[str, str]]] = {}
    for image in images:
        by_class.setdefault(image["class"], []).append(image)
    assert all(image["data-loaded"] == "true" for image in images), images
    assert len(by_class["still"]) == 3  # the PNG's thumbnail, the poster, the waveform
    assert len(by_class["preview"]) == 1  # the video's looping preview
    assert "3 meshes" in dom  # the model's card

    screenshot = tmp_path / "sheet.png"
    chromium(probe, f"--screenshot={screenshot}")
    page = pyvips.Image.new_from_file(str(screenshot))[:3]
    for image in images:
        left, top, width, height = (round(v) for v in json.loads(image["data-rect"]))
        assert width > 20 and height > 10, image
        drawn = page.crop(left + 2, top + 2, width - 4, height - 4)
        # A blank (unloaded) image is the page's flat background: one colour, no spread.
        assert drawn.deviate() > 5, image["src"]
    # The preview really is animated: several frames, as ffmpeg wrote them.
    (preview,) = by_class["preview"]
    frames = pyvips.Image.new_from_file(str(tmp_path / preview["src"]), n=-1)
    assert frames.get("n-pages") > 10


def _attributes(tag: str) -> dict[str, Any]:
    return {
        name: value.replace("&quot;", '"').replace("&amp;", "&")
        for name, value in re.findall(r'([\w-]+)="([^"]*)"', tag)
    }
