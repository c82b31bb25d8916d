"""Cue timestamps shared by every text track we write (subtitles, chapters, trickplay maps)."""

from __future__ import annotations


def timestamp(seconds: float, sep: str = ".") -> str:
    """HH:MM:SS.mmm (WebVTT; sep="," gives SRT), never negative."""
    millis = max(round(seconds * 1000), 0)
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{sep}{millis:03d}"
