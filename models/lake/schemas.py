"""Every lake table's schema and key, in one place (DESIGN §3).

A table is written by exactly one asset and upserted on its key, so a re-run changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

TS = pa.timestamp("us", tz="UTC")


@dataclass(frozen=True)
class TableSpec:
    name: str
    schema: pa.Schema
    keys: tuple[str, ...]
    description: str


def _spec(name: str, keys: tuple[str, ...], description: str, *fields: pa.Field) -> TableSpec:
    return TableSpec(name, pa.schema(list(fields)), keys, description)


f = pa.field

MEDIA_ITEMS = _spec(
    "media_items",
    ("media_id",),
    "One row per admitted media item, probed with ffprobe; media_id comes from the content hash.",
    f("media_id", pa.string(), nullable=False),
    f("source_uri", pa.string()),
    f("sha256", pa.string()),
    f("title", pa.string()),
    f("description", pa.string()),
    f("tags", pa.list_(pa.string())),
    f("duration_s", pa.float64()),
    f("width", pa.int32()),
    f("height", pa.int32()),
    f("fps", pa.float64()),
    f("video_codec", pa.string()),
    f("audio_codec", pa.string()),
    f("bitrate", pa.int64()),
    f("ingested_at", TS),
    f("status", pa.string()),
)

QUARANTINE = _spec(
    "quarantine",
    ("sha256", "source_uri"),
    "Rejected inputs with the reason; the file is moved aside under media/quarantine, never deleted.",
    f("source_uri", pa.string(), nullable=False),
    f("sha256", pa.string(), nullable=False),
    f("reason", pa.string()),
    f("quarantined_path", pa.string()),
    f("detected_at", TS),
)

RENDITIONS = _spec(
    "renditions",
    ("media_id", "rung", "codec"),
    "HLS/CMAF renditions per media item, ladder rung and codec (rung 'audio' for the AAC group), "
    "with measured bitrates, RFC 6381 codec string, quality against the source and the encoder used; "
    "a rendition that failed twice keeps FFmpeg's last words in `error` and is left out of the master.",
    f("media_id", pa.string(), nullable=False),
    f("rung", pa.string(), nullable=False),
    f("codec", pa.string(), nullable=False),
    f("kind", pa.string()),
    f("width", pa.int32()),
    f("height", pa.int32()),
    f("fps", pa.float64()),
    f("target_kbps", pa.int32()),
    f("bitrate", pa.int64()),
    f("peak_bitrate", pa.int64()),
    f("segment_count", pa.int32()),
    f("duration_s", pa.float64()),
    f("playlist_path", pa.string()),
    f("master_path", pa.string()),
    f("codecs", pa.string()),
    f("quality_metric", pa.string()),
    f("quality", pa.float64()),
    f("encoder", pa.string()),
    f("encode_fps", pa.float64()),
    f("attempts", pa.int32()),
    f("error", pa.string()),
)

PER_TITLE_LADDERS = _spec(
    "per_title_ladders",
    ("media_id", "rung"),
    "Per-title ladder choices: each rung's bitrate fitted on the title's rate-quality convex hull "
    "against the fixed ladder's bitrate at equal quality.",
    f("media_id", pa.string(), nullable=False),
    f("rung", pa.string(), nullable=False),
    f("width", pa.int32()),
    f("height", pa.int32()),
    f("fixed_kbps", pa.int32()),
    f("chosen_kbps", pa.int32()),
    f("target_quality", pa.float64()),
    f("metric", pa.string()),
    f("hull_height", pa.int32()),
)

THUMBNAILS = _spec(
    "thumbnails",
    ("media_id", "kind"),
    "Images per media item: the poster (kind 'poster'), one per shot ('shot-0003') and the trickplay "
    "WebVTT map ('trickplay', size = one tile, time_s = the interval).",
    f("media_id", pa.string(), nullable=False),
    f("kind", pa.string(), nullable=False),
    f("path", pa.string()),
    f("width", pa.int32()),
    f("height", pa.int32()),
    f("time_s", pa.float64()),
)

WORD = pa.struct(
    [
        f("word", pa.string()),
        f("start_s", pa.float64()),
        f("end_s", pa.float64()),
        f("probability", pa.float64()),
    ]
)

TRANSCRIPTS = _spec(
    "transcripts",
    ("media_id", "segment_id"),
    "Speech-to-text segments with word timings.",
    f("media_id", pa.string(), nullable=False),
    f("segment_id", pa.int32(), nullable=False),
    f("start_s", pa.float64()),
    f("end_s", pa.float64()),
    f("text", pa.string()),
    f("lang", pa.string()),
    f("words", pa.list_(WORD)),
    f("model", pa.string()),
)

ASR_RUNS = _spec(
    "asr_runs",
    ("media_id", "model"),
    "How fast speech recognition ran per media item and model: seconds of processing per second of "
    "audio (the real-time factor); the first timing is kept, so a re-run commits nothing.",
    f("media_id", pa.string(), nullable=False),
    f("model", pa.string(), nullable=False),
    f("backend", pa.string()),
    f("audio_s", pa.float64()),
    f("elapsed_s", pa.float64()),
    f("real_time_factor", pa.float64()),
    f("measured_at", TS),
)

SUBTITLES = _spec(
    "subtitles",
    ("media_id", "lang", "format"),
    "Subtitle files from the transcript (WebVTT, packaged as the HLS subtitles group, and SRT).",
    f("media_id", pa.string(), nullable=False),
    f("lang", pa.string(), nullable=False),
    f("format", pa.string(), nullable=False),
    f("path", pa.string()),
    f("cue_count", pa.int32()),
)

SHOTS = _spec(
    "shots",
    ("media_id", "detector", "shot_idx"),
    "Shot boundaries per media item and detector.",
    f("media_id", pa.string(), nullable=False),
    f("detector", pa.string(), nullable=False),
    f("shot_idx", pa.int32(), nullable=False),
    f("start_s", pa.float64()),
    f("end_s", pa.float64()),
)

CHAPTERS = _spec(
    "chapters",
    ("media_id", "chapter_idx"),
    "Chapters from shot boundaries and transcript topic shifts, titled from transcript keywords; "
    "they cover the whole running time without overlap.",
    f("media_id", pa.string(), nullable=False),
    f("chapter_idx", pa.int32(), nullable=False),
    f("start_s", pa.float64()),
    f("end_s", pa.float64()),
    f("title", pa.string()),
)

TEXT_EMBEDDINGS = _spec(
    "text_embeddings",
    ("media_id",),
    "A sentence embedding (all-MiniLM-L6-v2 unless configured) of title + description + transcript, "
    "for search and content-based recommendations.",
    f("media_id", pa.string(), nullable=False),
    f("model", pa.string()),
    f("text", pa.string()),
    f("embedding", pa.list_(pa.float32())),
)

CLIP_EMBEDDINGS = _spec(
    "clip_embeddings",
    ("media_id", "shot_idx"),
    "VideoMAE embeddings of 16 frames sampled per shot (only when a checkpoint is configured).",
    f("media_id", pa.string(), nullable=False),
    f("shot_idx", pa.int32(), nullable=False),
    f("model", pa.string()),
    f("embedding", pa.list_(pa.float32())),
    f("labels", pa.list_(pa.struct([f("label", pa.string()), f("score", pa.float64())]))),
)

CONTENT_LABELS = _spec(
    "content_labels",
    ("media_id", "source", "kind", "label"),
    "Labels with a score and where they came from: text zero-shot (genre, mood, moderation), VideoMAE "
    "(Kinetics, with a fine-tuned checkpoint), OCR words on shot stills, audio loudness and silence.",
    f("media_id", pa.string(), nullable=False),
    f("source", pa.string(), nullable=False),
    f("kind", pa.string(), nullable=False),
    f("label", pa.string(), nullable=False),
    f("score", pa.float64()),
)

MEDIA_CONTENT = _spec(
    "media_content",
    ("media_id",),
    "What a title is about, one row per item for the feature store: genre and mood labels, OCR'd "
    "and VideoMAE labels, duration, and which text embedding describes it; known from ingest time.",
    f("media_id", pa.string(), nullable=False),
    f("genres", pa.list_(pa.string())),
    f("moods", pa.list_(pa.string())),
    f("labels", pa.list_(pa.string())),
    f("duration_s", pa.float64()),
    f("embedding_id", pa.string()),
    f("available_at", TS),
)

USERS = _spec(
    "users",
    ("user_id",),
    "Viewers with their subscription tier and country.",
    f("user_id", pa.string(), nullable=False),
    f("tier", pa.string()),
    f("country", pa.string()),
    f("device", pa.string()),
    f("signup_ts", TS),
)

VIEW_EVENTS = _spec(
    "view_events",
    ("event_id",),
    "Player events; producers are at-least-once, the table holds each event_id once.",
    f("event_id", pa.string(), nullable=False),
    f("user_id", pa.string()),
    f("media_id", pa.string()),
    f("session_id", pa.string()),
    f("event_type", pa.string()),
    f("position_s", pa.float64()),
    f("ts", TS),
    f("device", pa.string()),
    f("tier", pa.string()),
)

PLAYBACK_BEACONS = _spec(
    "playback_beacons",
    ("event_id",),
    "Player quality-of-experience beacons (load_start, first_frame, rebuffer_start/end, "
    "rendition_switch, error, fatal_error, exit_before_start, view_end), exactly once per event_id; "
    "duration_ms is the startup time (first_frame), the stall (rebuffer_end) or the wait "
    "(exit_before_start); played_s the seconds of content played so far in the session.",
    f("event_id", pa.string(), nullable=False),
    f("user_id", pa.string()),
    f("media_id", pa.string()),
    f("session_id", pa.string()),
    f("event_type", pa.string()),
    f("ts", TS),
    f("device", pa.string()),
    f("tier", pa.string()),
    f("played_s", pa.float64()),
    f("duration_ms", pa.float64()),
    f("bitrate", pa.int64()),
    f("width", pa.int32()),
    f("height", pa.int32()),
    f("player_width", pa.int32()),
    f("player_height", pa.int32()),
    f("error_code", pa.string()),
)

QOE_HOURLY = _spec(
    "qoe_hourly",
    ("media_id", "hour", "device_class"),
    "Quality of experience per title, hour (of the session's first beacon) and device class: "
    "failure and exit-before-start rates, startup p50/p95, rebuffering, delivered resolution "
    "against the player size and a 0-100 viewer-experience score (formulas: models/qoe/metrics.py).",
    f("media_id", pa.string(), nullable=False),
    f("hour", TS, nullable=False),
    f("device_class", pa.string(), nullable=False),
    f("sessions", pa.int64()),
    f("failure_rate", pa.float64()),
    f("exit_before_start_rate", pa.float64()),
    f("startup_p50_s", pa.float64()),
    f("startup_p95_s", pa.float64()),
    f("played_s", pa.float64()),
    f("rebuffer_s", pa.float64()),
    f("rebuffer_pct", pa.float64()),
    f("rebuffers_per_min", pa.float64()),
    f("avg_height", pa.float64()),
    f("peak_height", pa.int32()),
    f("avg_upscale", pa.float64()),
    f("peak_upscale", pa.float64()),
    f("success_score", pa.float64()),
    f("startup_score", pa.float64()),
    f("smoothness_score", pa.float64()),
    f("quality_score", pa.float64()),
    f("qoe_score", pa.float64()),
)

HOURLY_STATS = _spec(
    "hourly_stats",
    ("media_id", "hour"),
    "Views, exact unique viewers, watch time and completion rate per media item and hour.",
    f("media_id", pa.string(), nullable=False),
    f("hour", TS, nullable=False),
    f("views", pa.int64()),
    f("unique_viewers", pa.int64()),
    f("watch_time_s", pa.float64()),
    f("avg_watch_time_s", pa.float64()),
    f("completion_rate", pa.float64()),
)

EVENTS_REJECTED = _spec(
    "events_rejected",
    ("event_id", "reason"),
    "Events that failed validation, kept with the reason (the raw row as JSON); never silently dropped.",
    f("event_id", pa.string(), nullable=False),
    f("reason", pa.string(), nullable=False),
    f("raw", pa.string()),
    f("received_at", TS),
)

USER_STATS = _spec(
    "user_stats",
    ("user_id",),
    "Per viewer: sessions, distinct titles, watch time, completion rate, last seen.",
    f("user_id", pa.string(), nullable=False),
    f("sessions", pa.int64()),
    f("titles", pa.int64()),
    f("watch_time_s", pa.float64()),
    f("completion_rate", pa.float64()),
    f("last_seen", TS),
)

CO_WATCH = _spec(
    "co_watch",
    ("media_a", "media_b"),
    "Item pairs watched by the same viewer within a time window, weighted by how many viewers did "
    "(media_a < media_b; the co-watch graph's edges).",
    f("media_a", pa.string(), nullable=False),
    f("media_b", pa.string(), nullable=False),
    f("viewers", pa.int64()),
    f("weight", pa.float64()),
)

COLD_START_USER = "*"  # recs_topk's user_id for the list that users no model knows get

RECS_TOPK = _spec(
    "recs_topk",
    ("user_id", "rank"),
    "Top-k recommendations per user from the champion model; user_id '*' is the cold-start list.",
    f("user_id", pa.string(), nullable=False),
    f("rank", pa.int32(), nullable=False),
    f("media_id", pa.string()),
    f("score", pa.float64()),
    f("model_version", pa.string()),
)

MODEL_DRIFT = _spec(
    "model_drift",
    ("latest_end", "feature"),
    "Drift of the recommender's inputs and outputs, one row per feature and evaluation: PSI between "
    "the latest window of view events and the equal window before it (status stable < 0.1 <= "
    "moderate <= 0.25 < shifted), sample sizes, and the served champion's online NDCG@10 on the "
    "latest window (null without a champion).",
    f("feature", pa.string(), nullable=False),
    f("latest_end", TS, nullable=False),
    f("kind", pa.string()),
    f("psi", pa.float64()),
    f("status", pa.string()),
    f("reference_start", TS),
    f("latest_start", TS),
    f("reference_n", pa.int64()),
    f("latest_n", pa.int64()),
    f("online_ndcg_at_10", pa.float64()),
    f("online_users", pa.int64()),
    f("model_version", pa.string()),
)

RENDITION_ROW = pa.struct(
    [
        f("rung", pa.string()),
        f("codec", pa.string()),
        f("width", pa.int32()),
        f("height", pa.int32()),
        f("bitrate", pa.int64()),
        f("playlist_path", pa.string()),
    ]
)
SUBTITLE_ROW = pa.struct([f("lang", pa.string()), f("format", pa.string()), f("path", pa.string())])

API_CATALOG = _spec(
    "api_catalog",
    ("media_id",),
    "What GET /media/{id} answers: the catalog row with renditions, subtitles and poster.",
    f("media_id", pa.string(), nullable=False),
    f("title", pa.string()),
    f("description", pa.string()),
    f("tags", pa.list_(pa.string())),
    f("duration_s", pa.float64()),
    f("width", pa.int32()),
    f("height", pa.int32()),
    f("master_playlist", pa.string()),
    f("poster", pa.string()),
    f("renditions", pa.list_(RENDITION_ROW)),
    f("subtitles", pa.list_(SUBTITLE_ROW)),
    f("shot_count", pa.int32()),
)

ALL_TABLES: dict[str, TableSpec] = {
    spec.name: spec
    for spec in (
        MEDIA_ITEMS,
        QUARANTINE,
        RENDITIONS,
        PER_TITLE_LADDERS,
        THUMBNAILS,
        TRANSCRIPTS,
        ASR_RUNS,
        SUBTITLES,
        SHOTS,
        CHAPTERS,
        TEXT_EMBEDDINGS,
        CLIP_EMBEDDINGS,
        CONTENT_LABELS,
        MEDIA_CONTENT,
        USERS,
        VIEW_EVENTS,
        PLAYBACK_BEACONS,
        QOE_HOURLY,
        HOURLY_STATS,
        EVENTS_REJECTED,
        USER_STATS,
        CO_WATCH,
        RECS_TOPK,
        MODEL_DRIFT,
        API_CATALOG,
    )
}
