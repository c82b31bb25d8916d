"""Content analysis: transcripts, WebVTT subtitles and shots per media item."""

import dagster as dg

from assets.common import StreamlakeResource, media_asset, media_source, write_metadata
from models.analysis.asr import Segment, transcribe
from models.analysis.audio import load_audio
from models.analysis.shots import detect_shots
from models.analysis.subtitles import to_webvtt
from models.lake import tables


@media_asset("analysis", {"whisper"})
def transcripts(context: dg.AssetExecutionContext, streamlake: StreamlakeResource) -> dg.MaterializeResult:
    """Whisper (faster-whisper, bundled tiny.en unless configured) segments with word timings."""
    settings, source, probed = media_source(streamlake, context.partition_key)
    audio = load_audio(source, probed, settings.ffmpeg_timeout_s)
    transcript = transcribe(audio, settings.whisper_model)
    rows = [
        {
            "media_id": context.partition_key,
            "segment_id": seg.segment_id,
            "start_s": seg.start_s,
            "end_s": seg.end_s,
            "text": seg.text,
            "lang": transcript.lang,
            "words": [vars(w) for w in seg.words],
            "model": "whisper-tiny.en" if settings.whisper_model is None else settings.whisper_model,
        }
        for seg in transcript.segments
    ]
    result = tables.replace_rows(settings, "transcripts", rows, where=("media_id", context.partition_key))
    text = " ".join(seg.text for seg in transcript.segments)
    return dg.MaterializeResult(metadata=write_metadata(result, segments=len(rows), text=text[:500]))


@media_asset("analysis", {"webvtt"}, upstream=("transcripts",))
def subtitles(context: dg.AssetExecutionContext, streamlake: StreamlakeResource) -> dg.MaterializeResult:
    """A WebVTT file from the transcript (none where nothing was said); packaging adds it to the HLS
    master as a subtitles group."""
    settings = streamlake.settings()
    media_id = context.partition_key
    segments = [
        Segment(r["segment_id"], r["start_s"], r["end_s"], r["text"])
        for r in tables.read_table(settings, "transcripts")
        .filter(media_id=media_id)
        .sort("segment_id")
        .iter_rows(named=True)
    ]
    rows = []
    if segments:
        target = settings.packaged / media_id / "subtitles" / "en.vtt"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(to_webvtt(segments))
        rows = [
            {
                "media_id": media_id,
                "lang": "en",
                "format": "webvtt",
                "path": str(target.relative_to(settings.packaged)),
                "cue_count": len(segments),
            }
        ]
    result = tables.replace_rows(settings, "subtitles", rows, where=("media_id", media_id))
    return dg.MaterializeResult(metadata=write_metadata(result, cues=len(segments)))


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
