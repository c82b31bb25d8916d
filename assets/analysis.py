"""Content analysis: transcripts, subtitles (WebVTT and SRT) and shots per media item."""

import time
from datetime import UTC, datetime

import dagster as dg

from assets.common import StreamlakeResource, media_asset, media_source, progress_logger, write_metadata
from models.analysis.asr import Segment, transcribe, transcript_text
from models.analysis.audio import SAMPLE_RATE, load_audio
from models.analysis.shots import detect_shots
from models.analysis.subtitles import to_srt, to_webvtt
from models.lake import tables
from models.settings import Settings


def shot_spans(settings: Settings, media_id: str) -> list[tuple[float, float]]:
    """An item's shots as (start_s, end_s), in order (the shots asset keeps one detector's rows)."""
    rows = tables.read_table(settings, "shots").filter(media_id=media_id).sort("shot_idx")
    return [(r["start_s"], r["end_s"]) for r in rows.iter_rows(named=True)]


def transcript_segments(settings: Settings, media_id: str) -> list[Segment]:
    """An item's transcript segments in order, as the analysis models take them."""
    rows = tables.read_table(settings, "transcripts").filter(media_id=media_id).sort("segment_id")
    return [Segment(r["segment_id"], r["start_s"], r["end_s"], r["text"]) for r in rows.iter_rows(named=True)]


@media_asset("analysis", {"whisper"})
def transcripts(context: dg.AssetExecutionContext, streamlake: StreamlakeResource) -> dg.MaterializeResult:
    """Whisper segments with word timings: the bundled tiny.en unless STREAMLAKE_WHISPER_MODEL names
    another, on faster-whisper or openai-whisper (STREAMLAKE_ASR_BACKEND)."""
    settings, source, probed = media_source(streamlake, context.partition_key)
    audio = load_audio(source, probed, settings.ffmpeg_timeout_s)
    started = time.perf_counter()
    transcript = transcribe(
        audio,
        settings.whisper_model,
        backend=settings.asr_backend,
        cache_dir=settings.models_dir,
        progress=progress_logger(context, f"{context.partition_key} transcription"),
    )
    elapsed_s = time.perf_counter() - started
    model = "whisper-tiny.en" if settings.whisper_model is None else settings.whisper_model
    model = f"{model} ({transcript.backend})"
    rows = [
        {
            "media_id": context.partition_key,
            "segment_id": seg.segment_id,
            "start_s": seg.start_s,
            "end_s": seg.end_s,
            "text": seg.text,
            "lang": transcript.lang,
            "words": [vars(w) for w in seg.words],
            "model": model,
        }
        for seg in transcript.segments
    ]
    result = tables.replace_rows(settings, "transcripts", rows, where=("media_id", context.partition_key))
    audio_s = len(audio) / SAMPLE_RATE
    speed: dict[str, float] = {}
    if audio_s > 0:  # the real-time factor /metrics reports as streamlake_asr_real_time_factor
        run = {
            "media_id": context.partition_key,
            "model": model,
            "backend": transcript.backend,
            "audio_s": audio_s,
            "elapsed_s": elapsed_s,
            "real_time_factor": elapsed_s / audio_s,
            "measured_at": datetime.now(UTC),
        }
        tables.insert_new(settings, "asr_runs", [run])  # keeps the first timing: re-runs commit nothing
        speed = {"real_time_factor": round(elapsed_s / audio_s, 4)}
    text = transcript_text(transcript.segments)
    return dg.MaterializeResult(metadata=write_metadata(result, segments=len(rows), text=text[:500], **speed))


@media_asset("analysis", {"webvtt"}, upstream=("transcripts",))
def subtitles(context: dg.AssetExecutionContext, streamlake: StreamlakeResource) -> dg.MaterializeResult:
    """A WebVTT file from the transcript (none where nothing was said); packaging adds it to the HLS
    master as a subtitles group."""
    settings = streamlake.settings()
    media_id = context.partition_key
    spoken = [s for s in transcript_segments(settings, media_id) if s.text.strip()]
    rows = []
    for fmt, suffix, render in (("webvtt", "vtt", to_webvtt), ("srt", "srt", to_srt)) if spoken else ():
        target = settings.packaged / media_id / "subtitles" / f"en.{suffix}"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(render(spoken))
        rows.append(
            {
                "media_id": media_id,
                "lang": "en",
                "format": fmt,
                "path": str(target.relative_to(settings.packaged)),
                "cue_count": len(spoken),
            }
        )
    result = tables.replace_rows(settings, "subtitles", rows, where=("media_id", media_id))
    return dg.MaterializeResult(metadata=write_metadata(result, cues=len(spoken)))


@media_asset("analysis", {"pyscenedetect", "transnetv2"})
def shots(context: dg.AssetExecutionContext, streamlake: StreamlakeResource) -> dg.MaterializeResult:
    """Shot boundaries from the configured detector (STREAMLAKE_SHOT_DETECTOR): PySceneDetect's
    content (default: F1 1.0 on hard cuts at ~500 fps), adaptive or threshold (fades), or TransNetV2
    (best on dissolves, ~35 fps on CPU). Rows carry the detector's name."""
    settings, source, probed = media_source(streamlake, context.partition_key)
    found = detect_shots(source, probed, settings.ffmpeg_timeout_s, detector=settings.shot_detector)
    rows = [
        {
            "media_id": context.partition_key,
            "detector": settings.shot_detector,
            "shot_idx": s.shot_idx,
            "start_s": s.start_s,
            "end_s": s.end_s,
        }
        for s in found
    ]
    result = tables.replace_rows(settings, "shots", rows, where=("media_id", context.partition_key))
    return dg.MaterializeResult(metadata=write_metadata(result, shots=len(rows)))
