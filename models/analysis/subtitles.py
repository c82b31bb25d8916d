"""WebVTT and SRT from transcript segments: WebVTT for HLS players, SRT for editors and downloads."""

from __future__ import annotations

from models.analysis.asr import Segment
from models.media.webvtt import timestamp


def _cue_text(text: str) -> str:
    """A blank line ends a cue in both formats, so blank lines inside the text are dropped."""
    return "\n".join(line for line in text.splitlines() if line.strip())


def to_webvtt(segments: list[Segment]) -> str:
    """One cue per segment, its id the segment's; WebVTT forbids '-->' inside cue text, so it is escaped."""
    cues = [
        f"{seg.segment_id + 1}\n{timestamp(seg.start_s)} --> {timestamp(seg.end_s)}\n{text}\n"
        for seg in segments
        if (text := _cue_text(seg.text.replace("-->", "->")))
    ]
    return "WEBVTT\n\n" + "\n".join(cues)


def to_srt(segments: list[Segment]) -> str:
    """One cue per non-empty segment, numbered 1, 2, 3... without gaps (SRT readers expect that,
    so the numbers are not segment ids), with a comma before the milliseconds."""
    texts = [(seg, text) for seg in segments if (text := _cue_text(seg.text))]
    cues = [
        f"{n}\n{timestamp(seg.start_s, ',')} --> {timestamp(seg.end_s, ',')}\n{text}\n"
        for n, (seg, text) in enumerate(texts, start=1)
    ]
    return "\n".join(cues)
