"""Collection assets against the SRP emulator: `srp-bundle assets upload` and SRP's three steps.

The CLI runs in-process (`main([...])`) against the session emulator; its PUT backoff goes to
a recorder instead of sleeping. Every step is checked on the emulator's side too: what it
logged (GET, PUTs, POST) and what it stored.
"""

from __future__ import annotations

import functools
import io
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from google.cloud import storage
from PIL import Image, ImageChops

from local_stack.processes import free_port
from local_stack.srp_emulator import SAMPLE_COLLECTION_UID, SEED_EXAMPLE_INPUT, SrpEmulatorProcess
from local_stack.srp_emulator.catalog import SAMPLE_COLLECTIONS_FILE, load_collections
from local_stack.srp_emulator.renderer import layer_box, render_png
from srp_bundle.asset_archive import build_archive, file_sha256
from srp_bundle.asset_upload import AssetUploader
from srp_bundle.cli import _assets, main
from srp_bundle.errors import (
    AssetUploadRejectedError,
    AssetUploadUrlExpiredError,
    SrpNotFoundError,
    SrpValidationError,
)
from srp_bundle.srp_client import SrpClient

from srp_emulator_helpers import API_KEY, RENDER_SIZE, SECOND_API_KEY, submit

BACKGROUND_COLOR = (12, 200, 34, 255)
UPLOAD_URL_PATH = "/api/v1/tasks/get_asset_upload_url/"
CREATE_ASSET_PATH = "/api/v1/tasks/create_asset/"


@pytest.fixture
def resources(tmp_path: Path) -> Path:
    """A studio's resource folder: a background image the sample collection uses, a scene."""
    folder = tmp_path / "demo_assets"
    (folder / "backgrounds").mkdir(parents=True)
    Image.new("RGBA", (32, 32), BACKGROUND_COLOR).save(folder / "backgrounds" / "RareFlare3.png")
    (folder / "scene.blend").write_bytes(bytes(range(256)) * 400)
    (folder / ".DS_Store").write_bytes(b"finder junk")
    return folder


@pytest.fixture
def backoffs(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The CLI's PUT retry delays, recorded instead of slept."""
    delays: list[float] = []
    monkeypatch.setattr(
        _assets, "AssetUploader", functools.partial(AssetUploader, sleep=delays.append)
    )
    return delays


@pytest.fixture
def cli_env(srp: SrpEmulatorProcess, monkeypatch: pytest.MonkeyPatch) -> SrpEmulatorProcess:
    """SRP_API_URL and SRP_API_KEY pointed at the emulator."""
    monkeypatch.setenv("SRP_API_URL", srp.url)
    monkeypatch.setenv("SRP_API_KEY", API_KEY)
    return srp


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run the CLI; its exit code, stdout and stderr."""
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def upload(capsys: pytest.CaptureFixture[str], source: Path, *extra: str) -> tuple[int, str, str]:
    """`srp-bundle assets upload --collection <sample> SOURCE ...`."""
    return run(
        capsys, "assets", "upload", "--collection", SAMPLE_COLLECTION_UID, str(source), *extra
    )


def local_uploader(sleep: Callable[[float], None] = time.sleep) -> AssetUploader:
    """An uploader in local mode: the emulator's upload URLs are http on loopback."""
    return AssetUploader(sleep=sleep, allow_loopback_http=True)


def api_calls(srp: SrpEmulatorProcess) -> list[tuple[str, str, int | None]]:
    """(method, path, status) of every request the emulator got, in order."""
    return [(e["method"], e["path"], e["response_status"]) for e in srp.control.requests()]


def test_a_folder_is_uploaded_end_to_end_and_renders_use_its_background(
    cli_env: SrpEmulatorProcess,
    resources: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    backoffs: list[float],
    renders_bucket: storage.Bucket,
) -> None:
    srp = cli_env
    kept = tmp_path / "kept.zip"

    code, out, err = upload(capsys, resources, "--output", str(kept))

    assert code == 0, err
    (asset,) = srp.control.assets()
    lines = out.strip().splitlines()
    assert lines[-1] == f"asset id: {asset['id']}"
    assert "files: 2, size:" in out and "1 system file(s) left out" in out
    assert f"sha256: {file_sha256(kept)}" in out
    assert "upload [" in err and "100%" in err
    # SRP's side: one GET, one PUT with exactly SRP's content type and no API key, one POST.
    assert api_calls(srp) == [
        ("GET", UPLOAD_URL_PATH, 200),
        ("PUT", f"/_uploads/demo_collection/{asset['id']}.zip", 200),
        ("POST", CREATE_ASSET_PATH, 201),
    ]
    (put,) = srp.control.requests(method="PUT")
    assert put["headers"]["Content-Type"] == "application/zip"
    assert put["headers"]["Content-Length"] == str(kept.stat().st_size)
    assert "Authorization" not in put["headers"]
    assert asset["created"] and asset["sha256"] == file_sha256(kept)
    with zipfile.ZipFile(kept) as archive:
        assert archive.namelist() == ["backgrounds/RareFlare3.png", "scene.blend"]
    assert backoffs == []

    # The sample collection now draws its background from the uploaded image.
    task_id = submit(srp).json()["id"]
    (task,) = srp.control.wait_for_tasks(status="done", id=task_id)
    render = Image.open(
        io.BytesIO(renders_bucket.blob(task["output_files"][0]).download_as_bytes())
    )
    assert render.size == (RENDER_SIZE, RENDER_SIZE)
    assert render.getpixel((1, 1)) == BACKGROUND_COLOR


def test_a_render_needing_a_file_the_assets_lack_fails_with_the_reason(
    cli_env: SrpEmulatorProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "other"
    (folder / "backgrounds").mkdir(parents=True)
    Image.new("RGB", (8, 8), (1, 2, 3)).save(folder / "backgrounds" / "Plain.png")
    (folder / "scene.blend").write_bytes(b"scene")
    assert upload(capsys, folder)[0] == 0

    task_id = submit(cli_env).json()["id"]  # asks for backgrounds/RareFlare3.png

    (task,) = cli_env.control.wait_for_tasks(status="failed", id=task_id)
    assert "has no backgrounds/RareFlare3.png" in task["failure_reason"]


def test_a_zip_with_an_extra_nesting_level_is_refused_with_a_hint_and_nothing_is_sent(
    cli_env: SrpEmulatorProcess, resources: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    nested = tmp_path / "nested.zip"
    with zipfile.ZipFile(nested, "w") as archive:
        for path in sorted(resources.rglob("*")):
            if path.is_file():
                archive.write(path, f"demo_assets/{path.relative_to(resources).as_posix()}")

    code, _, err = upload(capsys, nested)

    assert code == 2
    assert "sits under one folder, 'demo_assets'" in err
    assert "Pass the folder 'demo_assets' itself" in err and "--allow-single-folder" in err
    assert err.startswith("srp-bundle assets: error:") and "Traceback" not in err
    assert api_calls(cli_env) == []
    assert cli_env.control.assets() == []


def test_a_put_that_fails_twice_with_503_is_retried_and_then_succeeds(
    cli_env: SrpEmulatorProcess,
    resources: Path,
    capsys: pytest.CaptureFixture[str],
    backoffs: list[float],
) -> None:
    cli_env.control.set_asset_faults(fail_next_puts=[503, 503])

    code, out, err = upload(capsys, resources)

    assert code == 0, err
    (asset,) = cli_env.control.assets()
    assert out.strip().splitlines()[-1] == f"asset id: {asset['id']}"
    assert "in 3 attempts" in out
    puts = cli_env.control.requests(method="PUT")
    assert [(p["response_status"], p["fault"]) for p in puts] == [
        (503, "503"),
        (503, "503"),
        (200, None),
    ]
    assert len(backoffs) == 2  # waited before each retry
    assert asset["put_count"] == 3 and asset["uploaded"] and asset["created"]
    assert len(cli_env.control.requests(method="POST")) == 1


def test_a_dropped_connection_mid_upload_is_retried_from_the_first_byte(
    cli_env: SrpEmulatorProcess,
    resources: Path,
    capsys: pytest.CaptureFixture[str],
    backoffs: list[float],
) -> None:
    cli_env.control.set_asset_faults(fail_next_puts=["drop"])

    code, _, err = upload(capsys, resources)

    assert code == 0, err
    (asset,) = cli_env.control.assets()
    puts = cli_env.control.requests(method="PUT")
    assert [p["fault"] for p in puts] == ["drop", None]
    assert puts[-1]["response_status"] == 200
    assert asset["created"] and asset["size_bytes"] == int(puts[-1]["headers"]["Content-Length"])
    assert len(backoffs) == 1


def test_puts_that_keep_failing_end_with_exit_1_and_no_asset(
    cli_env: SrpEmulatorProcess,
    resources: Path,
    capsys: pytest.CaptureFixture[str],
    backoffs: list[float],
) -> None:
    cli_env.control.set_asset_faults(fail_next_puts=[503] * 5)

    code, out, err = upload(capsys, resources)

    assert code == 1
    assert "failed" in err and "nothing was created" in err and "503" in err
    assert len(cli_env.control.requests(method="PUT")) == 5
    assert cli_env.control.requests(method="POST") == []
    assert "asset id:" not in out


def test_an_expired_upload_url_is_replaced_once_by_a_fresh_one(
    cli_env: SrpEmulatorProcess,
    resources: Path,
    capsys: pytest.CaptureFixture[str],
    backoffs: list[float],
) -> None:
    cli_env.control.set_asset_faults(expired_urls_to_issue=1)

    code, out, err = upload(capsys, resources)

    assert code == 0, err
    expired, fresh = cli_env.control.assets()
    assert "expired; asking SRP for a new one" in out
    assert out.strip().splitlines()[-1] == f"asset id: {fresh['id']}"
    assert [p["response_status"] for p in cli_env.control.requests(method="PUT")] == [400, 200]
    assert not expired["uploaded"] and not expired["created"]
    assert fresh["created"]
    assert backoffs == []  # a refusal is not retried as it is


def test_upload_urls_that_keep_expiring_end_with_exit_1_and_no_asset(
    cli_env: SrpEmulatorProcess, resources: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cli_env.control.set_asset_faults(expired_urls_to_issue=2)

    code, _, err = upload(capsys, resources)

    assert code == 1
    assert "expired again" in err and "ExpiredToken" in err
    assert cli_env.control.requests(method="POST") == []
    assert not any(asset["uploaded"] for asset in cli_env.control.assets())


def test_an_expired_url_is_refused_like_cloud_storage_does(
    srp: SrpEmulatorProcess, resources: Path, tmp_path: Path
) -> None:
    archive = _zip(tmp_path, resources)
    srp.control.set_asset_faults(expired_urls_to_issue=1)
    with SrpClient(API_KEY, base_url=srp.url) as client, local_uploader() as uploader:
        asset = client.get_asset_upload_url(SAMPLE_COLLECTION_UID)

        with pytest.raises(AssetUploadUrlExpiredError) as raised:
            uploader.put(asset, archive)

    assert raised.value.status_code == 400
    assert raised.value.storage_code == "ExpiredToken"
    assert "<Code>ExpiredToken</Code>" in raised.value.body
    assert "X-Goog-Signature" not in str(raised.value)  # the signature is a credential


def test_a_wrong_content_type_is_refused_as_a_signed_url_would_and_not_retried(
    srp: SrpEmulatorProcess, resources: Path, tmp_path: Path
) -> None:
    archive = _zip(tmp_path, resources)
    delays: list[float] = []
    with SrpClient(API_KEY, base_url=srp.url) as client, local_uploader(delays.append) as up:
        asset = client.get_asset_upload_url(SAMPLE_COLLECTION_UID)

        with pytest.raises(AssetUploadRejectedError) as raised:
            up.put(asset, archive, content_type="application/octet-stream")

        assert not isinstance(raised.value, AssetUploadUrlExpiredError)
        assert raised.value.status_code == 403
        assert raised.value.storage_code == "SignatureDoesNotMatch"
        assert raised.value.body.startswith("<?xml")
        with pytest.raises(SrpValidationError):  # nothing arrived
            client.create_asset(asset.id)
    assert len(srp.control.requests(method="PUT")) == 1 and delays == []
    assert srp.control.assets(id=asset.id)[0]["uploaded"] is False


def test_a_tampered_expiry_breaks_the_signature(
    srp: SrpEmulatorProcess, tmp_path: Path, resources: Path
) -> None:
    archive = _zip(tmp_path, resources)
    with SrpClient(API_KEY, base_url=srp.url) as client:
        asset = client.get_asset_upload_url(SAMPLE_COLLECTION_UID)
    longer = asset.upload_url.replace("X-Goog-Expires=900", "X-Goog-Expires=604800")
    assert longer != asset.upload_url

    answer = httpx.put(
        longer, content=archive.read_bytes(), headers={"Content-Type": asset.content_type}
    )

    assert answer.status_code == 403
    assert "<Code>SignatureDoesNotMatch</Code>" in answer.text


def test_create_asset_before_the_upload_is_refused_and_not_retried(srp: SrpEmulatorProcess) -> None:
    with SrpClient(API_KEY, base_url=srp.url, sleep=lambda _: None) as client:
        asset = client.get_asset_upload_url(SAMPLE_COLLECTION_UID)

        with pytest.raises(SrpValidationError) as raised:
            client.create_asset(asset.id)

    assert raised.value.status_code == 400
    assert "has not been uploaded" in str(raised.value)
    assert len(srp.control.requests(method="POST")) == 1
    assert srp.control.assets(id=asset.id)[0]["created"] is False


def test_create_asset_of_an_unknown_or_another_users_id_is_not_found(
    srp: SrpEmulatorProcess,
) -> None:
    with (
        SrpClient(API_KEY, base_url=srp.url) as owner,
        SrpClient(SECOND_API_KEY, base_url=srp.url) as other,
    ):
        asset = owner.get_asset_upload_url(SAMPLE_COLLECTION_UID)
        for client, asset_id in ((owner, "no-such-asset"), (other, asset.id)):
            with pytest.raises(SrpNotFoundError):
                client.create_asset(asset_id)


def test_an_unknown_collection_is_a_usage_error(
    cli_env: SrpEmulatorProcess, resources: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(
        capsys,
        "assets",
        "upload",
        "--collection",
        "00000000-0000-4000-8000-000000000000",
        str(resources),
    )

    assert code == 2
    assert "not found" in err
    assert cli_env.control.requests(method="PUT") == []


def test_a_lost_create_asset_answer_is_not_retried_and_confirm_finishes_the_job(
    cli_env: SrpEmulatorProcess,
    resources: Path,
    capsys: pytest.CaptureFixture[str],
    backoffs: list[float],
) -> None:
    cli_env.control.set_faults(srp_post_error_rate=1.0, error_5xx_statuses=[503])

    code, out, err = upload(capsys, resources)

    assert code == 1
    (asset,) = cli_env.control.assets()
    assert f"srp-bundle assets confirm {asset['id']}" in err
    assert len(cli_env.control.requests(method="POST")) == 1  # a POST is never repeated blindly
    assert asset["uploaded"] and not asset["created"]

    cli_env.control.set_faults()
    code, out, err = run(capsys, "assets", "confirm", asset["id"])

    assert code == 0, err
    assert out.strip().splitlines()[-1] == f"asset id: {asset['id']}"
    assert cli_env.control.assets()[0]["created"]


def test_a_dry_run_builds_and_checks_but_contacts_nobody(
    cli_env: SrpEmulatorProcess, resources: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kept = tmp_path / "dry.zip"

    code, out, err = upload(capsys, resources, "--dry-run", "--output", str(kept))

    assert code == 0, err
    assert "files: 2" in out and "dry run: nothing uploaded" in out
    assert zipfile.ZipFile(kept).namelist() == ["backgrounds/RareFlare3.png", "scene.blend"]
    assert api_calls(cli_env) == []


def test_a_wrong_api_key_is_a_usage_error_naming_the_variable(
    cli_env: SrpEmulatorProcess,
    resources: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SRP_API_KEY", "not-a-key")

    code, _, err = upload(capsys, resources)

    assert code == 2
    assert "SRP refused the API key (SRP_API_KEY)" in err
    assert "not-a-key" not in err


def test_an_unreachable_srp_exits_3(
    resources: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SRP_API_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("SRP_API_KEY", API_KEY)
    monkeypatch.setattr(
        SrpClient, "__init__", functools.partialmethod(SrpClient.__init__, sleep=lambda _: None)
    )

    code, _, err = upload(capsys, resources)

    assert code == 3
    assert "SRP is unavailable" in err


def _zip(tmp_path: Path, folder: Path) -> Path:
    return build_archive(folder, tmp_path / "assets.zip").path


def test_the_assets_commands_have_help(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["assets"], ["assets", "upload"], ["assets", "confirm"]):
        code, out, _ = run(capsys, *argv, "--help")
        assert code == 0
        assert f"usage: srp-bundle {' '.join(argv)}" in out
    assert "--allow-single-folder" in run(capsys, "assets", "upload", "--help")[1]


def test_a_chunked_put_without_content_length_is_refused(srp: SrpEmulatorProcess) -> None:
    with SrpClient(API_KEY, base_url=srp.url) as client:
        asset = client.get_asset_upload_url(SAMPLE_COLLECTION_UID)

    answer = httpx.put(
        asset.upload_url,
        content=iter([b"PK\x03\x04", b"rest"]),  # no length: sent chunked
        headers={"Content-Type": asset.content_type},
    )

    assert answer.status_code == 411
    assert "<Code>MissingContentLength</Code>" in answer.text
    assert srp.control.assets(id=asset.id)[0]["uploaded"] is False


def test_an_upload_that_is_not_a_zip_cannot_become_an_asset(srp: SrpEmulatorProcess) -> None:
    with SrpClient(API_KEY, base_url=srp.url) as client:
        asset = client.get_asset_upload_url(SAMPLE_COLLECTION_UID)
        put = httpx.put(
            asset.upload_url, content=b"not a zip", headers={"Content-Type": asset.content_type}
        )
        assert put.status_code == 200 and put.headers["ETag"]

        with pytest.raises(SrpValidationError, match="not a ZIP archive"):
            client.create_asset(asset.id)
    assert srp.control.assets(id=asset.id)[0]["created"] is False


def test_create_asset_repeated_for_a_created_asset_answers_the_same(
    srp: SrpEmulatorProcess, resources: Path, tmp_path: Path
) -> None:
    archive = _zip(tmp_path, resources)
    with SrpClient(API_KEY, base_url=srp.url) as client, local_uploader() as uploader:
        asset = client.get_asset_upload_url(SAMPLE_COLLECTION_UID)
        uploader.put(asset, archive)
        first = client.create_asset(asset.id)
        created_at = srp.control.assets(id=asset.id)[0]["created_at"]

        second = client.create_asset(asset.id)

    assert first == second and first.id == asset.id
    assert srp.control.assets(id=asset.id)[0]["created_at"] == created_at


def test_a_missing_api_key_is_reported_before_anything_is_zipped(
    resources: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("SRP_API_KEY", raising=False)
    kept = tmp_path / "never.zip"

    code, out, err = upload(capsys, resources, "--output", str(kept))

    assert code == 2
    assert "SRP_API_KEY is not set" in err
    assert out == "" and not kept.exists()


def test_a_layer_image_replaces_the_shape_inside_the_layers_box_only() -> None:
    collection = load_collections(SAMPLE_COLLECTIONS_FILE)[SAMPLE_COLLECTION_UID]
    input_data = collection.validate_input(SEED_EXAMPLE_INPUT)
    red = Image.new("RGB", (5, 3), (255, 0, 0))

    drawn = Image.open(io.BytesIO(render_png(collection, input_data, 200)))
    pictured = Image.open(io.BytesIO(render_png(collection, input_data, 200, {"pants": red})))

    left, top, right, bottom = layer_box(collection, "pants", 200)
    changed = ImageChops.difference(drawn, pictured).getbbox(alpha_only=False)
    assert changed is not None
    assert left <= changed[0] and top <= changed[1] and changed[2] <= right and changed[3] <= bottom
    assert pictured.getpixel(((left + right) // 2, (top + bottom) // 2)) == (255, 0, 0, 255)


# ---- refusals of issue 21, item 7: each exits 2, names the path, and sends nothing ----------


def test_a_folder_with_a_link_out_of_it_is_refused_and_nothing_is_sent(
    cli_env: SrpEmulatorProcess, resources: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = tmp_path / "credentials"
    secret.write_text("aws_secret_access_key = hunter2")
    (resources / "backgrounds" / "Extra.png").symlink_to(secret)

    code, _, err = upload(capsys, resources)

    assert code == 2
    assert f"{resources / 'backgrounds' / 'Extra.png'} is a symbolic link (to {secret})" in err
    assert api_calls(cli_env) == [] and cli_env.control.assets() == []


def test_a_zip_with_a_symlink_entry_is_refused_and_nothing_is_sent(
    cli_env: SrpEmulatorProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pack = tmp_path / "pack.zip"
    with zipfile.ZipFile(pack, "w") as archive:
        archive.writestr("scene.blend", b"BLENDER")
        link = zipfile.ZipInfo("backgrounds/RareFlare3.png")
        link.create_system = 3
        link.external_attr = 0o120777 << 16
        archive.writestr(link, "/root/.aws/credentials")

    code, _, err = upload(capsys, pack)

    assert code == 2
    assert f"{pack} has a symbolic link entry 'backgrounds/RareFlare3.png'" in err
    assert api_calls(cli_env) == [] and cli_env.control.assets() == []


def test_a_zip_bomb_is_refused_unless_a_flag_raises_the_limit(
    cli_env: SrpEmulatorProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pack = tmp_path / "pack.zip"
    with zipfile.ZipFile(pack, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("scene.blend", b"BLENDER")
        archive.writestr("volumes/zeros.vdb", bytes(8 * 1024 * 1024))

    code, _, err = upload(capsys, pack)

    assert code == 2
    assert f"{pack}: entry 'volumes/zeros.vdb' unpacks to more than 100 times" in err
    assert "--max-compression-ratio" in err
    code, _, err = upload(capsys, pack, "--max-file-size", "4MiB", "--max-compression-ratio", "1e4")
    assert code == 2 and "more than 4,194,304 bytes; pass a higher --max-file-size" in err
    assert api_calls(cli_env) == [] and cli_env.control.assets() == []
    assert upload(capsys, pack, "--max-compression-ratio", "10000", "--dry-run")[0] == 0


def test_an_upload_url_that_is_plain_http_off_loopback_is_refused_before_any_byte(
    cli_env: SrpEmulatorProcess, resources: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cli_env.control.set_asset_faults(upload_url_origin="http://storage.example.test")

    code, out, err = upload(capsys, resources)

    assert code == 2
    (asset,) = cli_env.control.assets()
    url = f"http://storage.example.test/_uploads/demo_collection/{asset['id']}.zip"
    assert f"SRP's upload URL {url} is not https, or http to a loopback host" in err
    assert "X-Goog-Signature" not in out + err
    # SRP was asked for the URL; nothing was PUT anywhere, and no asset was created.
    assert api_calls(cli_env) == [("GET", UPLOAD_URL_PATH, 200)]
    assert not asset["uploaded"] and not asset["created"]
