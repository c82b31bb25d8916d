"""media_content: one row per title with what the analysis stage found, shaped for the feature store.

Labels come from content_labels (text zero-shot genres and moods, VideoMAE Kinetics actions, OCR
words); audio measurements are numbers, not labels, and stay out. The row's timestamp is the
item's ingest time: the analysis describes the file as it arrived, so a training row dated after
ingest may see it, one dated before may not.
"""

from __future__ import annotations

import polars as pl

# Kinds that say what a title is about, prefixed "kind:label" in `labels` (genre and mood also get
# their own columns, the ones a ranking model reads directly).
DESCRIPTIVE_KINDS = ("genre", "mood", "kinetics", "ocr")


def _label_list(labels: pl.DataFrame, kinds: tuple[str, ...], qualified: bool) -> pl.DataFrame:
    """Per media_id, its labels of these kinds, best score first (ties by name): a stable order."""
    name = pl.concat_str("kind", pl.lit(":"), "label") if qualified else pl.col("label")
    return (
        labels.filter(pl.col("kind").is_in(kinds))
        .sort(["media_id", "score", "kind", "label"], descending=[False, True, False, False], nulls_last=True)
        .group_by("media_id", maintain_order=True)
        .agg(name.alias("values"))
    )


def media_content(items: pl.DataFrame, labels: pl.DataFrame, embeddings: pl.DataFrame) -> pl.DataFrame:
    """items: media_id, duration_s, ingested_at; labels: content_labels; embeddings: text_embeddings.

    embedding_id names the vector ("<model>/<media_id>" in text_embeddings) rather than copying
    384 floats into every feature row; null where the item has no embedding yet.
    """
    columns = {
        "genres": _label_list(labels, ("genre",), qualified=False),
        "moods": _label_list(labels, ("mood",), qualified=False),
        "labels": _label_list(labels, DESCRIPTIVE_KINDS, qualified=True),
    }
    frame = items.select("media_id", "duration_s", pl.col("ingested_at").alias("available_at"))
    for column, values in columns.items():
        frame = frame.join(values.rename({"values": column}), on="media_id", how="left").with_columns(
            pl.col(column).fill_null([])
        )
    ids = embeddings.select("media_id", pl.concat_str("model", pl.lit("/"), "media_id").alias("embedding_id"))
    return (
        frame.join(ids, on="media_id", how="left")
        .select("media_id", "genres", "moods", "labels", "duration_s", "embedding_id", "available_at")
        .sort("media_id")
    )
