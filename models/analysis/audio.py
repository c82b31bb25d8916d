"""Decode a source's audio to 16 kHz mono float32 through our FFmpeg guard (not PyAV), so
untrusted files get the same demuxer forcing and protocol whitelist as every other read."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from models.media import tools
from models.media.probe import Probe, safe_input

SAMPLE_RATE = 16_000


def load_audio(source: Path, probed: Probe, timeout_s: float) -> np.ndarray:
    """PCM samples in [-1, 1]; an empty array when the source has no audio stream."""
    if not probed.audio_codec:
        return np.zeros(0, dtype=np.float32)
    output = safe_input(source, probed.demuxer).audio.output("-", f="s16le", ac=1, ar=SAMPLE_RATE)
    pcm = tools.run_graph(output, timeout_s)
    return np.frombuffer(pcm, dtype=np.int16).astype(np.float32) / 32768.0
