"""QoE per title x hour x device class from playback_beacons, in Polars (lazy, so it streams).

A session is the beacons sharing a session_id; its hour is that of its first beacon and its
device class that of its `device` (DEVICE_CLASSES). Per group of sessions:

- failure_rate = sessions with a fatal_error / sessions
- exit_before_start_rate = sessions with an exit_before_start / sessions
- startup_p50_s, startup_p95_s: linear-interpolated quantiles of first_frame duration_ms / 1000
- played_s = sum over sessions of the session's largest played_s; rebuffer_s = sum of rebuffer_end
  duration_ms / 1000
- rebuffer_pct = 100 * rebuffer_s / (rebuffer_s + played_s)
- rebuffers_per_min = rebuffer_starts / (played_s / 60)
- a rendition_switch holds from its played_s to the next switch's (or the session's last played_s):
  avg_height = time-weighted mean delivered height, peak_height = max height,
  avg_upscale = time-weighted mean of player_height / height (>1: the player stretches the picture),
  peak_upscale = the smallest player_height / height seen (the best moment)
- scores, each 0-100:
  success = 100 * (1 - share of sessions that failed or exited before start)
  startup = 100 * 8 / (8 + startup_p50_s): 100 at instant start, 50 at 8 s
  smoothness = 100 * exp(-K * rebuffer_pct), K = ln 2 / 2: halves at 2% rebuffering, since
    engagement falls fastest over the first percent or two of buffering ratio (Dobrian et al.,
    "Understanding the Impact of Video Quality on User Engagement", SIGCOMM 2011); K is our choice
  quality = 100 * time-weighted mean of min(1, height / player_height)
  qoe_score = geometric mean of the components that have data (success always has): any one
    component at 0 sinks the score, as one broken part of playback sinks the experience.

Floats are rounded to 6 dp so re-runs are bit-identical and upserts commit nothing.
"""

import math

import polars as pl

DECIMALS = 6
DEVICE_CLASSES = {
    "web": "desktop",
    "desktop": "desktop",
    "ios": "mobile",
    "android": "mobile",
    "mobile": "mobile",
    "tv": "tv",
}
STARTUP_HALF_S = 8.0
SMOOTHNESS_K = math.log(2) / 2
GROUP = ["media_id", "hour", "device_class"]
SCORES = ["success_score", "startup_score", "smoothness_score", "quality_score"]


def device_class(device: pl.Expr) -> pl.Expr:
    """The device class a player's `device` falls in; unknown or missing devices are "other"."""
    return device.replace_strict(DEVICE_CLASSES, default="other", return_dtype=pl.String)


def _is(kind: str) -> pl.Expr:
    return pl.col("event_type") == kind


def session_qoe(beacons: pl.LazyFrame) -> pl.LazyFrame:
    """One row per session: group keys, outcome, startup, play and stall time, rendition time sums."""
    sessions = beacons.group_by("session_id").agg(
        pl.col("media_id").min(),
        pl.col("ts").min().dt.truncate("1h").alias("hour"),
        device_class(pl.col("device").sort_by("ts").first()).alias("device_class"),
        pl.col("played_s").max().fill_null(0.0).alias("played_s"),
        _is("fatal_error").any().alias("failed"),
        _is("exit_before_start").any().alias("exited"),
        pl.col("duration_ms").filter(_is("first_frame")).min().alias("startup_ms"),
        pl.col("duration_ms").filter(_is("rebuffer_end")).sum().alias("rebuffer_ms"),
        _is("rebuffer_start").sum().alias("rebuffers"),
    )
    switches = (
        beacons.filter(_is("rendition_switch"))
        .select("session_id", "ts", "event_id", "played_s", "height", "player_height")
        .join(sessions.select("session_id", pl.col("played_s").alias("end_s")), on="session_id")
        .sort("session_id", "ts", "event_id")
        .with_columns(pl.col("played_s").fill_null(0.0).alias("from_s"))
        .with_columns(pl.col("from_s").shift(-1).over("session_id").fill_null(pl.col("end_s")).alias("to_s"))
        .with_columns(
            (pl.col("to_s") - pl.col("from_s")).clip(0.0).alias("seconds"),
            (pl.col("player_height") / pl.col("height")).alias("upscale"),
        )
        .with_columns(pl.when(pl.col("upscale").is_not_null()).then(pl.col("seconds")).alias("sized_s"))
        .group_by("session_id")
        .agg(
            pl.col("seconds").sum().alias("rendition_s"),
            (pl.col("height") * pl.col("seconds")).sum().alias("height_s"),
            pl.col("height").max().alias("peak_height"),
            pl.col("sized_s").sum().alias("sized_s"),
            (pl.col("upscale") * pl.col("sized_s")).sum().alias("upscale_s"),
            (pl.min_horizontal(1.0 / pl.col("upscale"), 1.0) * pl.col("sized_s")).sum().alias("sharp_s"),
            pl.col("upscale").min().alias("peak_upscale"),
        )
    )
    return sessions.join(switches, on="session_id", how="left")


def _share(numerator: pl.Expr, denominator: pl.Expr) -> pl.Expr:
    """numerator / denominator, null where the denominator is 0 (no data)."""
    return pl.when(denominator > 0).then(numerator / denominator)


def qoe_hourly(beacons: pl.LazyFrame) -> pl.LazyFrame:
    """The qoe_hourly table: every metric and score above per media_id x hour x device_class."""
    startup_s = pl.col("startup_ms") / 1000.0
    played, stalled = pl.col("played_s").sum(), pl.col("rebuffer_ms").sum() / 1000.0
    grouped = (
        session_qoe(beacons)
        .group_by(GROUP)
        .agg(
            pl.len().cast(pl.Int64).alias("sessions"),
            (pl.col("failed").sum() / pl.len()).alias("failure_rate"),
            (pl.col("exited").sum() / pl.len()).alias("exit_before_start_rate"),
            (1.0 - (pl.col("failed") | pl.col("exited")).sum() / pl.len()).alias("success"),
            startup_s.quantile(0.5, "linear").alias("startup_p50_s"),
            startup_s.quantile(0.95, "linear").alias("startup_p95_s"),
            played.alias("played_s"),
            stalled.alias("rebuffer_s"),
            _share(100.0 * stalled, stalled + played).alias("rebuffer_pct"),
            _share(pl.col("rebuffers").sum(), played / 60.0).alias("rebuffers_per_min"),
            _share(pl.col("height_s").sum(), pl.col("rendition_s").sum()).alias("avg_height"),
            pl.col("peak_height").max().cast(pl.Int32),
            _share(pl.col("upscale_s").sum(), pl.col("sized_s").sum()).alias("avg_upscale"),
            pl.col("peak_upscale").min(),
            _share(pl.col("sharp_s").sum(), pl.col("sized_s").sum()).alias("sharpness"),
        )
    )
    scored = grouped.with_columns(
        (100.0 * pl.col("success")).alias("success_score"),
        (100.0 * STARTUP_HALF_S / (STARTUP_HALF_S + pl.col("startup_p50_s"))).alias("startup_score"),
        (100.0 * (-SMOOTHNESS_K * pl.col("rebuffer_pct")).exp()).alias("smoothness_score"),
        (100.0 * pl.col("sharpness")).alias("quality_score"),
    ).with_columns(
        pl.concat_list(SCORES)
        .list.drop_nulls()
        .list.eval(pl.element().log().mean())
        .list.first()
        .exp()
        .alias("qoe_score")
    )
    return scored.drop("success", "sharpness").with_columns(pl.col(pl.Float64).round(DECIMALS)).sort(GROUP)


def by_device_class(qoe: pl.DataFrame) -> pl.DataFrame:
    """Sessions and session-weighted mean qoe_score per device class: the summary an operator reads."""
    scored = pl.col("qoe_score").is_not_null()
    return (
        qoe.group_by("device_class")
        .agg(
            pl.col("sessions").sum(),
            ((pl.col("qoe_score") * pl.col("sessions")).sum() / pl.col("sessions").filter(scored).sum())
            .round(1)
            .alias("qoe_score"),
        )
        .sort("device_class")
    )


def title_qoe(qoe: pl.DataFrame) -> pl.DataFrame:
    """qoe_score per title x device class over all hours, session-weighted: what ranking reads."""
    scored = qoe.filter(pl.col("qoe_score").is_not_null())
    return (
        scored.group_by("media_id", "device_class")
        .agg(
            pl.col("sessions").sum(),
            ((pl.col("qoe_score") * pl.col("sessions")).sum() / pl.col("sessions").sum())
            .round(DECIMALS)
            .alias("qoe_score"),
        )
        .sort("media_id", "device_class")
    )
