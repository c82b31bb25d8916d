"""Text analysis: MiniLM embeddings, chapters from topic shifts and cuts, zero-shot and audio
labels, and on-screen text read back from frames FFmpeg drew it on."""

from __future__ import annotations

import re
from collections.abc import Sequence
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest

from models.analysis import ocr
from models.analysis.asr import Segment
from models.analysis.chapters import Chapter, chapters, chapters_webvtt
from models.analysis.labels import Label, audio_stats, silences, zero_shot
from models.analysis.ocr import OcrText, OcrWord, ocr_frames, words_as_labels
from models.analysis.text_embeddings import MAX_WORDS, embed_texts, item_text
from models.media import tools
from models.media.probe import probe, safe_input
from models.media.samples import AAC, BITEXACT, H264

FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf")  # Debian fonts-dejavu-core
VOLCANO = [
    "The volcano erupted at dawn and sent ash high into the sky.",
    "Lava flowed down the slopes of the mountain toward the village.",
    "Geologists measure the magma chamber beneath the volcano crater.",
    "Volcanic eruptions can change the climate for several years.",
    "The crater lake boils when hot gases rise from below the volcano.",
    "Ash clouds from the eruption grounded flights across the region.",
    "Scientists track earthquakes that warn of a coming eruption.",
    "Cooling lava forms black basalt rock along the coast.",
    "The volcano's summit is covered in sulphur vents.",
    "Villagers were evacuated before the lava reached their homes.",
]
BREAD = [
    "To bake bread, first mix flour, water, salt and yeast.",
    "Knead the dough for ten minutes until it is smooth and elastic.",
    "Let the dough rise in a warm place for about an hour.",
    "Shape the loaf and place it on a floured baking tray.",
    "Preheat the oven to two hundred and twenty degrees.",
    "Bake the bread until the crust is golden brown.",
    "Tap the bottom of the loaf; it should sound hollow.",
    "Let the bread cool on a rack before slicing it.",
]
CUTS = [0.0, 10.0, 20.0, 30.0, 40.0, 50.0, 61.0, 70.0, 80.0, 90.0, 100.0, 110.0, 120.0, 130.0, 140.0]
DURATION = 150.0
SHOTS = list(pairwise([*CUTS, DURATION]))


def _speech(sentences: Sequence[str], step_s: float = 6.0) -> list[Segment]:
    """One segment per sentence, `step_s` apart with a short pause after each."""
    return [Segment(i, i * step_s, i * step_s + step_s - 0.5, text) for i, text in enumerate(sentences)]


def _topic_embed(texts: Sequence[str]) -> np.ndarray:
    """A stand-in embedder whose two axes count volcano words and bread words."""
    axes = [{"volcano", "lava", "ash", "eruption", "crater", "magma"}, {"bread", "dough", "loaf", "bake"}]
    words = [re.findall(r"[a-z]+", text.lower()) for text in texts]
    return np.array(
        [[sum(w in axis for w in ws) for axis in axes] + [0.01] for ws in words], dtype=np.float32
    )


def _covers(found: list[Chapter], duration_s: float, min_chapter_s: float) -> None:
    assert [c.idx for c in found] == list(range(len(found)))
    assert found[0].start_s == 0.0 and found[-1].end_s == duration_s
    assert all(a.end_s == b.start_s for a, b in pairwise(found))
    assert all(c.end_s - c.start_s >= min_chapter_s for c in found) or len(found) == 1
    assert all(c.title for c in found)


def _ffmpeg(*args: str) -> None:
    tools.run([tools.require("ffmpeg"), "-v", "error", "-nostdin", "-y", *args], timeout_s=60)


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A 6 s tone with a 2.5 s hole of digital silence (2.0-4.5 s), and a clip with words drawn on."""
    folder = tmp_path_factory.mktemp("text")
    tone = "aevalsrc='if(between(t,2,4.5),0,0.5*sin(2*PI*440*t))':s=48000:d=6"
    _ffmpeg(
        "-f", "lavfi", "-i", "color=c=gray:s=64x64:r=25:d=6", "-f", "lavfi", "-i", tone,
        *H264, *AAC, "-shortest", *BITEXACT, str(folder / "tone.mp4"),
    )  # fmt: skip
    draw = (
        f"drawtext=fontfile={FONT}:text='STREAMLAKE':fontsize=64:fontcolor=white:x=(w-text_w)/2:y=110,"
        f"drawtext=fontfile={FONT}:text='Volcano lecture':fontsize=40:fontcolor=yellow:x=(w-text_w)/2:y=220"
    )
    _ffmpeg(
        "-f", "lavfi", "-i", "color=c=0x203040:s=640x360:r=25:d=1", "-vf", draw, *H264, *BITEXACT,
        str(folder / "title.mp4"),
    )  # fmt: skip
    return {path.stem: path for path in folder.iterdir()}


def test_minilm_ranks_a_paraphrase_above_an_unrelated_sentence() -> None:
    query, paraphrase, unrelated = embed_texts(
        ["A cat is sitting on the mat.", "A kitten rests on a rug.", "Stock markets fell sharply today."]
    )
    assert query @ paraphrase > query @ unrelated + 0.3


def test_embeddings_are_unit_float32_rows() -> None:
    vectors = embed_texts(["one", "two words", ""])
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert embed_texts([]).shape == (0, 384)


def test_item_text_keeps_title_and_description_and_fits_the_model() -> None:
    text = item_text("Big Buck Bunny", "A large rabbit wakes up in a meadow.", "word " * 1000)
    assert text.startswith("Big Buck Bunny. A large rabbit wakes up in a meadow. word")
    assert len(text.split()) == MAX_WORDS
    assert item_text("Title", None, "  ") == "Title"


def test_chapters_split_at_the_topic_shift_snapped_to_a_cut() -> None:
    """Volcano talk to 60 s, bread talk to 100 s, then no speech: the shift (59.75 s) moves onto
    the cut at 61 s, the end of speech (95.5 s) moves onto the cut at 100 s, and the silent part is
    named by its shots."""
    segments = _speech(VOLCANO + BREAD[:6])
    found = chapters(DURATION, SHOTS, segments, embed=_topic_embed, min_chapter_s=30, window_s=20)
    _covers(found, DURATION, 30)
    assert [(c.start_s, c.end_s) for c in found] == [(0.0, 61.0), (61.0, 100.0), (100.0, 150.0)]
    assert "Volcano" in found[0].title and "Bread" in found[1].title
    assert found[2].title == "Shots 11–15"


@pytest.mark.parametrize("min_chapter_s", [5.0, 30.0, 200.0])
def test_chapters_always_cover_the_running_time(min_chapter_s: float) -> None:
    segments = _speech(VOLCANO + BREAD, step_s=7.0)
    found = chapters(DURATION, SHOTS, segments, embed=_topic_embed, min_chapter_s=min_chapter_s, window_s=15)
    _covers(found, DURATION, min_chapter_s)


def test_chapters_without_speech_follow_cuts_or_number_themselves() -> None:
    found = chapters(95.0, [*SHOTS[:9], (90.0, 95.0)], [], embed=_topic_embed, min_chapter_s=30)
    assert [(c.start_s, c.end_s, c.title) for c in found] == [
        (0.0, 30.0, "Shots 1–3"),
        (30.0, 61.0, "Shots 4–6"),
        (61.0, 95.0, "Shots 7–10"),
    ]
    assert chapters(12.5, [], [], embed=_topic_embed) == [Chapter(0, 0.0, 12.5, "Chapter 1")]


def test_chapters_with_minilm_find_the_subject_change() -> None:
    segments = _speech(VOLCANO + BREAD)
    found = chapters(108.0, [*SHOTS[:10], (100.0, 108.0)], segments, min_chapter_s=30, window_s=20)
    _covers(found, 108.0, 30)
    assert [c.start_s for c in found] == [0.0, 61.0]
    assert "Volcano" in found[0].title or "Lava" in found[0].title
    assert "Bread" in found[1].title or "Loaf" in found[1].title


def test_chapters_webvtt_is_a_monotonic_cue_list() -> None:
    found = [Chapter(0, 0.0, 61.0, "Lava, Volcano"), Chapter(1, 61.0, 3725.5, "A --> B & <i>C</i>")]
    vtt = chapters_webvtt(found)
    header, *blocks = vtt.strip().split("\n\n")
    assert header == "WEBVTT"
    times = []
    for number, block in enumerate(blocks, start=1):
        ident, timing, payload = block.split("\n")
        assert ident == str(number) and payload and "-->" not in payload and "<" not in payload
        start, end = re.fullmatch(r"(\d\d:\d\d:\d\d\.\d{3}) --> (\d\d:\d\d:\d\d\.\d{3})", timing).groups()
        times += [start, end]
    assert times == sorted(times) and times[0] == "00:00:00.000" and times[-1] == "01:02:05.500"


def test_zero_shot_labels_a_cartoon_bunny_as_safe_animation() -> None:
    labels = zero_shot(embed_texts(["a cartoon bunny in a forest"])[0])
    top = {label.kind: label.label for label in reversed(labels)}  # first of each kind wins
    assert top["genre"] == "animation" and top["moderation"] == "safe"
    assert all(label.source == "text-zero-shot" and 0 < label.score <= 1 for label in labels)
    violent = zero_shot(embed_texts(["A man shoots another man in the street, blood everywhere"])[0])
    assert next(label.label for label in violent if label.kind == "moderation") == "violence"


def test_silencedetect_log_parsing_clips_to_the_running_time() -> None:
    log = "silence_start: -0.01\nsilence_end: 1.5 | silence_duration: 1.51\nsilence_start: 8\n"
    assert silences(log, 10.0) == [(0.0, 1.5), (8.0, 10.0)]


def test_audio_stats_measure_loudness_and_silence(clips: dict[str, Path]) -> None:
    stats = {label.label: label for label in audio_stats(clips["tone"], probe(clips["tone"]), timeout_s=30)}
    assert stats["silence_ratio"].score == pytest.approx(2.5 / 6, abs=0.05)
    assert -20 < stats["loudness_lufs"].score < 0
    assert {label.kind for label in stats.values()} == {"audio"}
    assert audio_stats(clips["title"], probe(clips["title"]), timeout_s=30) == []  # no audio stream


def test_ocr_reads_text_burned_into_a_frame(clips: dict[str, Path], tmp_path: Path) -> None:
    frame = tmp_path / "frame.png"
    source = clips["title"]
    tools.run_graph(safe_input(source, probe(source).demuxer).output(str(frame), vframes=1), timeout_s=30)
    (read,) = ocr_frames([frame], timeout_s=30)
    assert "STREAMLAKE" in read.text and "Volcano lecture" in read.text
    assert read.path == frame and read.confidence > 60
    words = {label.label: label.score for label in words_as_labels([read])}
    assert {"streamlake", "volcano", "lecture"} <= set(words) and min(words.values()) >= 0.6


def test_ocr_labels_keep_only_confident_real_words() -> None:
    seen = [("Lava!", 91.0), ("lava", 70.0), ("the", 95.0), ("x7k", 99.0), ("ab", 99.0), ("ghost", 40.0)]
    read = OcrText(Path("f.png"), "", 0.0, tuple(OcrWord(text, conf) for text, conf in seen))
    assert words_as_labels([read]) == [Label("ocr", "lava", 0.91, "ocr")]


def test_missing_tesseract_names_the_debian_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ocr.shutil, "which", lambda _: None)
    with pytest.raises(tools.ToolMissing, match="apt-get install -y tesseract-ocr"):
        ocr_frames([Path("frame.png")], timeout_s=5)
