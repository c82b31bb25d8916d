"""WebVTT from transcript segments."""

from __future__ import annotations

from models.analysis.asr import Segment


def _timestamp(seconds: float) -> str:
    millis = round(seconds * 1000)
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}.{millis:03d}"


def to_webvtt(segments: list[Segment]) -> str:
    """One cue per segment; WebVTT forbids '-->' inside cue text, so it is escaped."""
    cues = [
        f"{seg.segment_id + 1}\n{_timestamp(seg.start_s)} --> {_timestamp(seg.end_s)}\n"
        f"{seg.text.replace('-->', '->')}\n"
        for seg in segments
        if seg.text
    ]
    return "WEBVTT\n\n" + "\n".join(cues)
