"""Encode a ladder plan to HLS fMP4 (CMAF) media playlists: one decode split to every rendition
in a single FFmpeg process, falling back to one process per rendition (each retried once) when
the combined run fails, so one bad rung never takes the others down.

Keyframes are forced at the same presentation times (every segment_s seconds) in every rendition,
whatever its codec or frame rate, so segment boundaries line up and players can switch rungs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import ffmpeg

from models.media import encoders, loudness, tools
from models.media.ladder import LadderConfig, RungPlan
from models.media.probe import Probe, safe_input

log = logging.getLogger("streamlake.transcode")
AUDIO_NAME = "audio_aac"
Progress = Callable[[float], None]


@dataclass(frozen=True)
class Job:
    """One output of the encode: a video rendition (plan set) or the audio rendition."""

    name: str
    plan: RungPlan | None
    encoder: str


@dataclass(frozen=True)
class Outcome:
    job: Job
    error: str | None  # FFmpeg's last lines when the rendition failed twice
    seconds: float  # wall time of the FFmpeg process that made it (shared by a split run)
    attempts: int


def _hls_options(out_dir: Path, name: str, segment_s: float) -> dict[str, Any]:
    return {
        "f": "hls",
        "hls_time": segment_s,
        "hls_playlist_type": "vod",
        "hls_segment_type": "fmp4",
        "hls_fmp4_init_filename": f"{name}_init.mp4",
        "hls_segment_filename": str(out_dir / f"{name}_%04d.m4s"),
        "hls_flags": "independent_segments",
    }


def _video_output(
    stream: Any, probed: Probe, plan: RungPlan, encoder: encoders.Encoder, out_dir: Path, segment_s: float
) -> Any:
    stream = stream.filter("scale", plan.width, plan.height, flags="bicubic")
    if plan.fps < probed.fps:
        stream = stream.filter("fps", fps=plan.fps)
    if encoder.needs_upload:
        stream = stream.filter("format", "nv12").filter("hwupload")
    options = {
        "c:v": encoder.name,
        **encoder.args(plan, gop=max(1, round(plan.fps * segment_s))),
        "force_key_frames": f"expr:gte(t,n_forced*{segment_s})",
        **_hls_options(out_dir, plan.name, segment_s),
    }
    return stream.output(str(out_dir / f"{plan.name}.m3u8"), **options)


def _audio_output(stream: Any, gain_db: float, ladder: LadderConfig, out_dir: Path) -> Any:
    hls = _hls_options(out_dir, AUDIO_NAME, ladder.segment_s)
    options = {"c:a": "aac", "b:a": f"{ladder.audio_kbps}k", **hls}
    stream = stream.filter("aformat", **loudness.OUTPUT_FORMAT).filter("volume", f"{gain_db}dB")
    return stream.output(str(out_dir / f"{AUDIO_NAME}.m3u8"), **options)


def _command(
    source: Path,
    probed: Probe,
    jobs: Sequence[Job],
    ladder: LadderConfig,
    gain_db: float,
    out_dir: Path,
    hwaccel: str,
) -> list[str]:
    """One FFmpeg argument list encoding all the jobs from a single decode of the source."""
    node = safe_input(source, probed.demuxer)
    video_jobs = [j for j in jobs if j.plan is not None]
    splits = node.video.split() if len(video_jobs) > 1 else None
    outputs, global_args = [], []
    for index, job in enumerate(video_jobs):
        assert job.plan is not None
        encoder = encoders.select(job.plan.codec, hwaccel)
        global_args += [a for a in encoder.global_args() if a not in global_args]
        stream = splits[index] if splits is not None else node.video
        outputs.append(_video_output(stream, probed, job.plan, encoder, out_dir, ladder.segment_s))
    if any(j.plan is None for j in jobs):
        outputs.append(_audio_output(node.audio, gain_db, ladder, out_dir))
    merged = ffmpeg.merge_outputs(*outputs)
    if global_args:
        merged = merged.global_args(*global_args)
    return tools.graph_args(merged, overwrite=True)


def plan_jobs(probed: Probe, plans: Sequence[RungPlan], hwaccel: str) -> list[Job]:
    """Every output to make: the video renditions and, when the source has sound, one AAC rendition."""
    jobs = [Job(p.name, p, encoders.select(p.codec, hwaccel).name) for p in plans]
    if probed.audio_codec:
        jobs.append(Job(AUDIO_NAME, None, "aac"))
    return jobs


def encode(
    source: Path,
    probed: Probe,
    jobs: Sequence[Job],
    ladder: LadderConfig,
    out_dir: Path,
    *,
    timeout_s: float,
    hwaccel: str = "auto",
    split: bool = True,
    progress: Progress | None = None,
) -> list[Outcome]:
    """Encode the jobs into out_dir; failures are returned per job, never raised."""
    gain = 0.0
    if any(j.plan is None for j in jobs):
        measured = loudness.measure(source, probed.demuxer, timeout_s)
        gain = loudness.gain_db(measured, ladder.loudness_lufs, ladder.true_peak_db)
        log.info("loudness %.1f LUFS, true peak %.1f dB: gain %+.1f dB", measured.integrated_lufs,
                 measured.true_peak_db, gain)  # fmt: skip

    def run(batch: Sequence[Job]) -> float:
        started = time.perf_counter()
        args = _command(source, probed, batch, ladder, gain, out_dir, hwaccel)
        tools.run_with_progress(args, timeout_s, probed.duration_s, progress or (lambda _done: None))
        return time.perf_counter() - started

    if split and len(jobs) > 1:
        try:
            seconds = run(jobs)
            return [Outcome(job, None, seconds, 1) for job in jobs]
        except tools.FFmpegFailed as err:
            log.warning("combined encode failed (%s); encoding each rendition on its own", err)
    return [_encode_alone(run, job) for job in jobs]


def _encode_alone(run: Callable[[Sequence[Job]], float], job: Job) -> Outcome:
    """One rendition in its own process, retried once; the error keeps FFmpeg's last lines."""
    outcome = Outcome(job, "not run", 0.0, 0)
    for attempt in (1, 2):
        try:
            return Outcome(job, None, run([job]), attempt)
        except tools.FFmpegFailed as err:
            log.warning("%s failed (attempt %d): %s", job.name, attempt, err)
            outcome = replace(outcome, error=f"{err}\n{err.tail}".strip(), attempts=attempt)
    return outcome
