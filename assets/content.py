"""Content understanding per media item: a text embedding for search, chapters, VideoMAE clip
embeddings (with a configured checkpoint) and labels from text, video, on-screen text and audio."""

import functools
from collections.abc import Callable, Sequence

import dagster as dg
import numpy as np

from assets.analysis import shot_spans, transcript_segments
from assets.common import StreamlakeResource, markdown_table, media_asset, media_source, write_metadata
from models.analysis import labels as zero_shot_labels
from models.analysis.asr import transcript_text
from models.analysis.chapters import chapters as find_chapters
from models.analysis.chapters import chapters_webvtt
from models.analysis.ocr import ocr_frames, words_as_labels
from models.analysis.text_embeddings import BUNDLED_MODEL_NAME, embed_texts, item_text
from models.lake import tables
from models.settings import Settings


@functools.cache
def _embedder(model_path: str | None) -> Callable[[Sequence[str]], np.ndarray]:
    """One embedding callable per model, so label descriptions are embedded once per process."""
    return functools.partial(embed_texts, model_path=model_path) if model_path else embed_texts


@media_asset("analysis", {"minilm"}, upstream=("media_items", "transcripts"))
def text_embeddings(
    context: dg.AssetExecutionContext, streamlake: StreamlakeResource
) -> dg.MaterializeResult:
    """all-MiniLM-L6-v2 (or the configured sentence-transformers model) over title, description and
    transcript: what catalog search and content-based recommendations compare."""
    settings = streamlake.settings()
    media_id = context.partition_key
    item = tables.read_table(settings, "media_items").filter(media_id=media_id).row(0, named=True)
    spoken = transcript_text(transcript_segments(settings, media_id))
    text = item_text(item["title"], item["description"], spoken)
    vector = _embedder(settings.text_model)([text])[0]
    row = {
        "media_id": media_id,
        "model": settings.text_model or BUNDLED_MODEL_NAME,
        "text": text,
        "embedding": vector.astype(np.float32).tolist(),
    }
    result = tables.upsert(settings, "text_embeddings", [row])
    return dg.MaterializeResult(metadata=write_metadata(result, text=text[:300], dimensions=len(vector)))


@media_asset("analysis", {"minilm", "webvtt"}, upstream=("media_items", "shots", "transcripts"))
def chapters(context: dg.AssetExecutionContext, streamlake: StreamlakeResource) -> dg.MaterializeResult:
    """Chapters from shot boundaries and transcript topic shifts, titled from transcript keywords,
    with a WebVTT chapters track beside the package."""
    settings, _, probed = media_source(streamlake, context.partition_key)
    media_id = context.partition_key
    found = find_chapters(
        probed.duration_s,
        shot_spans(settings, media_id),
        transcript_segments(settings, media_id),
        embed=_embedder(settings.text_model),
    )
    track = settings.packaged / media_id / "chapters" / "chapters.vtt"
    track.parent.mkdir(parents=True, exist_ok=True)
    track.write_text(chapters_webvtt(found))
    rows = [
        {"media_id": media_id, "chapter_idx": c.idx, "start_s": c.start_s, "end_s": c.end_s, "title": c.title}
        for c in found
    ]
    result = tables.replace_rows(settings, "chapters", rows, where=("media_id", media_id))
    return dg.MaterializeResult(
        metadata=write_metadata(
            result,
            chapters=markdown_table(
                ["#", "span", "title"], ((c.idx, f"{c.start_s:.1f}–{c.end_s:.1f} s", c.title) for c in found)
            ),
            track=dg.MetadataValue.path(str(track)),
        )
    )


@media_asset("analysis", {"videomae"}, upstream=("media_items", "shots"))
def clip_embeddings(
    context: dg.AssetExecutionContext, streamlake: StreamlakeResource
) -> dg.MaterializeResult:
    """VideoMAE embeddings of 16 frames sampled per shot (and Kinetics labels with a fine-tuned
    checkpoint). No VideoMAE weights ship offline: without STREAMLAKE_VIDEOMAE_CHECKPOINT the asset
    records nothing and says so, rather than embedding with random weights."""
    settings, source, probed = media_source(streamlake, context.partition_key)
    media_id = context.partition_key
    rows: list[dict] = []
    checkpoint = settings.videomae_checkpoint
    if checkpoint is None:
        context.log.info("no VideoMAE checkpoint configured (STREAMLAKE_VIDEOMAE_CHECKPOINT): skipped")
    else:
        from models.analysis import videomae

        spans = shot_spans(settings, media_id)
        clips = videomae.sample_clip_frames(source, probed, spans, settings.ffmpeg_timeout_s)
        embed = videomae.embed_clips_on_ray if settings.ray_address else videomae.embed_clips
        results = embed(clips, checkpoint)
        for idx, vector in enumerate(results.embeddings):
            top = results.labels[idx] if results.labels else []
            rows.append(
                {
                    "media_id": media_id,
                    "shot_idx": idx,
                    "model": checkpoint,
                    "embedding": vector.tolist(),
                    "labels": [{"label": label, "score": score} for label, score in top],
                }
            )
    result = tables.replace_rows(settings, "clip_embeddings", rows, where=("media_id", media_id))
    return dg.MaterializeResult(metadata=write_metadata(result, checkpoint=checkpoint or "none configured"))


def _video_labels(settings: Settings, media_id: str) -> list[zero_shot_labels.Label]:
    """Kinetics labels per shot, averaged over the item's shots."""
    clips = tables.read_table(settings, "clip_embeddings").filter(media_id=media_id)
    scores: dict[str, list[float]] = {}
    for labels in clips["labels"].to_list() if clips.height else []:
        for entry in labels or []:
            scores.setdefault(entry["label"], []).append(entry["score"])
    return [
        zero_shot_labels.Label("kinetics", label, round(sum(s) / clips.height, 4), "videomae")
        for label, s in scores.items()
    ]


@media_asset(
    "analysis",
    {"minilm", "tesseract"},
    upstream=("media_items", "text_embeddings", "thumbnails", "clip_embeddings"),
)
def content_labels(context: dg.AssetExecutionContext, streamlake: StreamlakeResource) -> dg.MaterializeResult:
    """Genre, mood and moderation labels (zero-shot against described label sets), Kinetics labels
    from VideoMAE, words read on the poster and shot stills (Tesseract), loudness and silence."""
    settings, source, probed = media_source(streamlake, context.partition_key)
    media_id = context.partition_key
    vector = tables.read_table(settings, "text_embeddings").filter(media_id=media_id)["embedding"][0]
    images = tables.read_table(settings, "thumbnails").filter(media_id=media_id)
    stills = [
        settings.packaged / p
        for kind, p in images.select("kind", "path").iter_rows()
        if kind == "poster" or kind.startswith("shot-")
    ]
    found = [
        *zero_shot_labels.zero_shot(
            np.asarray(vector, dtype=np.float32), embed=_embedder(settings.text_model)
        ),
        *_video_labels(settings, media_id),
        *words_as_labels(ocr_frames(stills, settings.ffmpeg_timeout_s)),
        *zero_shot_labels.audio_stats(source, probed, settings.ffmpeg_timeout_s),
    ]
    best: dict[tuple[str, str, str], float] = {}
    for label in found:
        key = (label.source, label.kind, label.label)
        best[key] = max(best.get(key, label.score), label.score)
    rows = [
        {"media_id": media_id, "source": source_, "kind": kind, "label": name, "score": float(score)}
        for (source_, kind, name), score in sorted(best.items())
    ]
    result = tables.replace_rows(settings, "content_labels", rows, where=("media_id", media_id))
    return dg.MaterializeResult(
        metadata=write_metadata(
            result,
            labels=markdown_table(
                ["source", "kind", "label", "score"],
                ((r["source"], r["kind"], r["label"], f"{r['score']:.3g}") for r in rows),
            ),
        )
    )
