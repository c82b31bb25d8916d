"""Both ASR backends on the espeak-ng speech clips: they hear the sentence, agree with each other, and
time words inside the clip; the converted weights are CTranslate2's own, cached and rebuilt when
damaged; SRT and WebVTT output parses."""

from __future__ import annotations

import re
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest

from models.analysis import whisper_convert
from models.analysis.asr import (
    BACKENDS,
    Segment,
    Transcript,
    bundled_model_path,
    transcribe,
    transcript_text,
    word_error_rate,
)
from models.analysis.audio import SAMPLE_RATE, load_audio
from models.analysis.subtitles import to_srt, to_webvtt
from models.media.probe import probe
from models.media.samples import SPEECH, speech_clip

SRT_TIME = r"(\d{2}):([0-5]\d):([0-5]\d),(\d{3})"
VTT_TIME = r"(\d{2}):([0-5]\d):([0-5]\d)\.(\d{3})"


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, np.ndarray]:
    """The SPEECH sentences exactly as the sample library makes them, decoded by the platform's loader."""
    folder = tmp_path_factory.mktemp("speech")
    audio = {}
    for name, text in SPEECH.items():
        speech_clip(text, folder / name, folder)
        audio[name] = load_audio(folder / name, probe(folder / name), timeout_s=60)
    return audio


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="module")
def heard(
    clips: dict[str, np.ndarray], cache_dir: Path
) -> dict[tuple[str, str], tuple[Transcript, list[float]]]:
    """Every clip through every backend once (the expensive part), with the progress reported."""
    out = {}
    for backend in BACKENDS:
        for name, audio in clips.items():
            reports: list[float] = []
            transcript = transcribe(audio, None, 2, backend, cache_dir=cache_dir, progress=reports.append)
            out[backend, name] = (transcript, reports)
    return out


@pytest.mark.parametrize("backend", BACKENDS)
def test_each_backend_hears_the_sentence(heard: dict, backend: str) -> None:
    for name, sentence in SPEECH.items():
        transcript, _ = heard[backend, name]
        wer = word_error_rate([sentence], [transcript_text(transcript.segments)])
        assert wer <= 0.25, (
            f"{backend} on {name}: WER {wer:.2f}, heard {transcript_text(transcript.segments)!r}"
        )
        assert (transcript.lang, transcript.backend) == ("en", backend)


def test_the_backends_agree(heard: dict) -> None:
    """Same weights, different engines (int8 CTranslate2 against float32 PyTorch): over the clips
    their words differ by at most a fifth."""
    ours = [transcript_text(heard["faster-whisper", name][0].segments) for name in SPEECH]
    theirs = [transcript_text(heard["openai-whisper", name][0].segments) for name in SPEECH]
    assert word_error_rate(theirs, ours) <= 0.2, f"{ours} vs {theirs}"


@pytest.mark.parametrize("backend", BACKENDS)
def test_word_times_are_monotonic_and_inside_the_clip(
    heard: dict, clips: dict[str, np.ndarray], backend: str
) -> None:
    for name, audio in clips.items():
        transcript, reports = heard[backend, name]
        duration = audio.size / SAMPLE_RATE
        words = [w for seg in transcript.segments for w in seg.words]
        assert words, f"{backend} timed no words in {name}"
        assert all(0 <= w.start_s <= w.end_s <= duration + 0.05 for w in words)
        assert all(a.start_s <= b.start_s and a.end_s <= b.end_s for a, b in pairwise(words))
        assert all(0 <= w.probability <= 1 for w in words)
        assert reports[0] == 0.0 and reports[-1] == 1.0 and reports == sorted(reports)


def test_converted_weights_reproduce_ctranslate2(clips: dict[str, np.ndarray], cache_dir: Path) -> None:
    """The converted encoder gives CTranslate2's float32 encoder output (the decoder shares the
    mapping code path for attention, norms and MLPs)."""
    import ctranslate2
    import torch
    import whisper

    path = bundled_model_path()
    model = whisper_convert.load_openai_whisper(path, cache_dir)
    mel = whisper.log_mel_spectrogram(whisper.pad_or_trim(next(iter(clips.values()))))[None]
    with torch.inference_mode():
        ours = model.encoder(mel).numpy()
    ct2 = ctranslate2.models.Whisper(path, device="cpu", compute_type="float32", intra_threads=2)
    theirs = np.asarray(ct2.encode(ctranslate2.StorageView.from_array(mel.numpy()), to_cpu=True))
    assert np.abs(ours - theirs).max() <= 1e-3 * np.abs(theirs).max()
    assert model.alignment_heads.to_dense().nonzero().tolist() == [[1, 0], [2, 0], [2, 5], [3, 0], [3, 1],
                                                                   [3, 2], [3, 3], [3, 4]]  # fmt: skip


def test_the_conversion_is_cached_and_rebuilt_when_damaged(heard: dict, cache_dir: Path) -> None:
    path = whisper_convert.ensure_checkpoint(bundled_model_path(), cache_dir)
    stamp = path.stat().st_mtime_ns
    assert whisper_convert.ensure_checkpoint(bundled_model_path(), cache_dir) == path
    assert path.stat().st_mtime_ns == stamp, "a valid cached checkpoint was rewritten"
    whole = path.read_bytes()
    flipped = bytearray(whole)
    flipped[len(whole) // 2] ^= 0xFF
    for damaged in (whole[: len(whole) // 2], bytes(flipped)):
        path.write_bytes(damaged)
        assert not whisper_convert.is_valid(path)
        assert whisper_convert.ensure_checkpoint(bundled_model_path(), cache_dir) == path
        assert whisper_convert.is_valid(path) and path.stat().st_size == len(whole)
    assert sorted(p.name for p in cache_dir.iterdir()) == [path.name], "temp files left behind"


def test_short_audio_and_unknown_backends(cache_dir: Path) -> None:
    for backend in BACKENDS:
        assert transcribe(np.zeros(100, np.float32), backend=backend, cache_dir=cache_dir).segments == []
    with pytest.raises(ValueError, match="unknown ASR backend"):
        transcribe(np.zeros(SAMPLE_RATE, np.float32), backend="whisper.cpp")


def _seconds(match: tuple[str, ...]) -> float:
    hours, minutes, secs, millis = map(int, match)
    return hours * 3600 + minutes * 60 + secs + millis / 1000


def parse_srt(text: str) -> list[tuple[float, float, str]]:
    """A strict SRT reader: cues numbered from 1 without gaps, `HH:MM:SS,mmm --> HH:MM:SS,mmm`."""
    cues = []
    for number, block in enumerate(text.strip("\n").split("\n\n"), start=1):
        lines = block.split("\n")
        assert lines[0] == str(number), f"cue {number} is numbered {lines[0]!r}"
        times = re.fullmatch(f"{SRT_TIME} --> {SRT_TIME}", lines[1])
        assert times, f"bad SRT timing line {lines[1]!r}"
        assert len(lines) > 2 and all(line.strip() for line in lines[2:])
        cues.append((_seconds(times.groups()[:4]), _seconds(times.groups()[4:]), "\n".join(lines[2:])))
    return cues


def parse_webvtt(text: str) -> list[tuple[float, float, str]]:
    header, *blocks = text.split("\n\n")
    assert header == "WEBVTT"
    cues = []
    for block in filter(None, (b.strip("\n") for b in blocks)):
        lines = block.split("\n")
        timing = 1 if "-->" not in lines[0] else 0
        times = re.fullmatch(f"{VTT_TIME} --> {VTT_TIME}", lines[timing])
        assert times, f"bad WebVTT timing line {lines[timing]!r}"
        assert all("-->" not in line for line in lines[timing + 1 :])
        text = "\n".join(lines[timing + 1 :])
        cues.append((_seconds(times.groups()[:4]), _seconds(times.groups()[4:]), text))
    return cues


def _check_cues(cues: list[tuple[float, float, str]], duration_s: float) -> None:
    assert cues
    assert all(0 <= start <= end <= duration_s for start, end, _ in cues)
    assert all(a[0] <= b[0] for a, b in pairwise(cues))


def test_subtitles_of_a_real_transcript_parse(heard: dict, clips: dict[str, np.ndarray]) -> None:
    for name, audio in clips.items():
        segments = heard["faster-whisper", name][0].segments
        duration = audio.size / SAMPLE_RATE + 0.05
        for cues in (parse_srt(to_srt(segments)), parse_webvtt(to_webvtt(segments))):
            _check_cues(cues, duration)
            assert " ".join(text for *_, text in cues) == " ".join(s.text for s in segments)


def test_subtitles_number_cues_and_keep_text_safe() -> None:
    segments = [
        Segment(0, 0.0, 1.5, "Hello there."),
        Segment(1, 1.5, 2.0, ""),  # nothing said: no cue, and SRT numbering does not skip
        Segment(2, 3661.0005, 3662.25, "A -> B --> C"),
        Segment(3, 3662.25, 3663.0, "two\n\nparagraphs"),
    ]
    srt = parse_srt(to_srt(segments))
    assert [c[:2] for c in srt] == [(0.0, 1.5), (3661.0, 3662.25), (3662.25, 3663.0)]
    assert srt[2][2] == "two\nparagraphs"
    vtt = parse_webvtt(to_webvtt(segments))
    assert [c[2] for c in vtt][1] == "A -> B -> C"
    assert to_srt([]) == "" and parse_webvtt(to_webvtt([])) == []


def test_int8_weights_are_dequantized_the_way_ctranslate2_quantizes() -> None:
    """model_spec._quantize stores rint(w * 127 / max|row|) as int8 and that factor as weight_scale."""
    weights = np.random.default_rng(0).normal(size=(6, 4, 3)).astype(np.float32)
    scale = 127 / np.abs(weights.reshape(6, -1)).max(axis=1)
    stored = np.rint(weights * scale[:, None, None]).astype(np.int8)
    out = whisper_convert._dequantize({"conv/weight": stored, "conv/weight_scale": scale, "n": np.int16(6)})
    assert set(out) == {"conv/weight", "n"}
    assert np.abs(out["conv/weight"] - weights).max() <= 0.5 / scale.min() + 1e-6
