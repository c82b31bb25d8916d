"""On-screen text (titles, captions, signs) read from still frames with the Tesseract CLI.

Tesseract runs as a separate process through our guarded runner (argument list, timeout, memory
cap), so a hostile frame can crash or hang only its own process. Sparse-text mode (--psm 11)
suits video frames, where words float over pictures rather than fill a page; TSV output carries
a confidence per word, which is what separates words from texture read as letters.
"""

from __future__ import annotations

import csv
import io
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from models.analysis.labels import Label
from models.analysis.text_embeddings import STOP_WORDS
from models.media import tools

INSTALL_HINT = "install it with: sudo apt-get install -y tesseract-ocr   (or run `make install`)"
PAGE_SEGMENTATION = 11  # sparse text: find as much text as possible in no particular order
MIN_WORD_LEN = 3
MIN_CONFIDENCE = 60.0


@dataclass(frozen=True)
class OcrWord:
    text: str
    confidence: float  # Tesseract's 0-100


@dataclass(frozen=True)
class OcrText:
    path: Path
    text: str  # the frame's words, one line of text per line Tesseract found
    confidence: float  # mean word confidence, 0-100; 0 when nothing was read
    words: tuple[OcrWord, ...] = ()


def require_tesseract() -> str:
    """The tesseract binary's path, or a one-line error naming the Debian package."""
    path = shutil.which("tesseract")
    if path is None:
        raise tools.ToolMissing(f"tesseract not found on PATH: {INSTALL_HINT}")
    return path


def parse_tsv(path: Path, tsv: str) -> OcrText:
    """Word rows (level 5) of Tesseract's TSV, grouped into lines."""
    lines: dict[tuple[str, ...], list[OcrWord]] = {}
    for row in csv.DictReader(io.StringIO(tsv), delimiter="\t", quoting=csv.QUOTE_NONE):
        text = (row.get("text") or "").strip()
        if row.get("level") != "5" or not text or float(row.get("conf") or -1) < 0:
            continue
        key = tuple(row[k] for k in ("page_num", "block_num", "par_num", "line_num"))
        lines.setdefault(key, []).append(OcrWord(text, round(float(row["conf"]), 2)))
    words = tuple(w for line in lines.values() for w in line)
    return OcrText(
        path=path,
        text="\n".join(" ".join(w.text for w in line) for line in lines.values()),
        confidence=round(sum(w.confidence for w in words) / len(words), 2) if words else 0.0,
        words=words,
    )


def ocr_frames(images: Sequence[Path], timeout_s: float, lang: str = "eng") -> list[OcrText]:
    """One OcrText per image, in order; `timeout_s` bounds each image's Tesseract run."""
    binary = require_tesseract()
    return [
        parse_tsv(
            image,
            tools.run(
                [binary, str(image), "stdout", "--psm", str(PAGE_SEGMENTATION), "-l", lang, "tsv"],
                timeout_s,
            ).decode("utf-8", "replace"),
        )
        for image in images
    ]


def words_as_labels(
    texts: Sequence[OcrText], min_len: int = MIN_WORD_LEN, min_confidence: float = MIN_CONFIDENCE
) -> list[Label]:
    """Real words only (letters, at least `min_len`, read with `min_confidence`, not a stop word),
    lower-cased, once each with their best confidence scaled to 0-1, most confident first."""
    best: dict[str, float] = {}
    for found in texts:
        for word in found.words:
            token = word.text.strip(".,;:!?\"'()[]{}«»“”‘’-–—").lower()
            real = len(token) >= min_len and token.isalpha() and token not in STOP_WORDS
            if real and word.confidence >= min_confidence:
                best[token] = max(best.get(token, 0.0), word.confidence)
    ranked = sorted(best.items(), key=lambda item: (-item[1], item[0]))
    return [Label("ocr", token, round(conf / 100, 4), "ocr") for token, conf in ranked]
