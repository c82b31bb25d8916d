"""The event aggregates in PySpark, for event tables past one machine; same rows as the Polars ones.

The Spark bridge (DESIGN §6): no delta-spark jars, so Spark reads a table's current snapshot
through its file URIs (reading the folder would also read removed files) and results go back
through delta-rs (`toArrow()` -> tables.replace_rows / upsert). Every rule that makes the output
identical to models/events/aggregates.py is listed there; pyspark is imported only when used.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Literal

import polars as pl

from models.events.aggregates import AGGREGATES, DECIMALS, as_table, window_us
from models.lake import tables
from models.lake.schemas import ALL_TABLES
from models.settings import Settings, apply_offline_env

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

LOCAL_CONF = {
    "spark.master": "local[2]",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.shuffle.partitions": "4",
    "spark.driver.host": "127.0.0.1",
    "spark.driver.bindAddress": "127.0.0.1",
}


def spark_session(remote: str | None = None, conf: Mapping[str, str] | None = None) -> SparkSession:
    """Spark Connect at `remote` (settings.spark_remote, i.e. SPARK_REMOTE) when given, else local[2].

    Local mode is sized for a small machine (2 cores, 4 shuffle partitions, no UI); conf adds to
    or overrides it (e.g. spark.driver.memory, read only when the JVM starts). Sessions run in
    UTC so hour buckets match Polars'.
    """
    from pyspark.sql import SparkSession

    apply_offline_env()
    builder = SparkSession.builder.appName("streamlake")
    if remote:
        builder = builder.remote(remote)
        settings = dict(conf or {})
    else:
        settings = {**LOCAL_CONF, **(conf or {})}
    for key, value in settings.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.conf.set("spark.sql.session.timeZone", "UTC")
    if not remote:
        spark.sparkContext.setLogLevel("ERROR")
    return spark


def read_delta(
    spark: SparkSession, settings: Settings, table: str, columns: list[str] | None = None
) -> DataFrame:
    """The table's current snapshot: exactly its file URIs, typed by the declared schema.

    An absent or empty table reads as no rows with that schema. Object-store URIs need the
    matching Hadoop filesystem configured on the Spark side.
    """
    from pyspark.sql.pandas.types import from_arrow_schema

    schema = from_arrow_schema(ALL_TABLES[table].schema, prefer_timestamp_ntz=False)
    files = tables.snapshot_files(settings, table)
    if files:
        reader = spark.read.schema(schema).option("basePath", tables.table_uri(settings, table))
        frame = reader.parquet(*files)
    else:
        frame = spark.createDataFrame([], schema)
    return frame.select(*columns) if columns else frame


def to_polars(table: str, frame: DataFrame) -> pl.DataFrame:
    """A (small) Spark result collected through Arrow, shaped as the table."""
    return as_table(table, pl.from_arrow(frame.toArrow()))  # type: ignore[arg-type]


def write_delta(
    settings: Settings, table: str, frame: DataFrame, mode: Literal["replace", "upsert"] = "replace"
) -> tables.WriteResult:
    """Write a Spark result through delta-rs: replace makes the table hold exactly these rows."""
    rows = frame.toArrow()
    write = tables.replace_rows if mode == "replace" else tables.upsert
    return write(settings, table, rows)


def _round(column: Column) -> Column:
    """Polars' round(6), half to even: rint(x * 1e6) / 1e6 in the same double arithmetic."""
    from pyspark.sql import functions as F

    scale = float(10**DECIMALS)
    return F.rint(column * scale) / scale


def sessions(events: DataFrame) -> DataFrame:
    """One row per playback session (see aggregates.sessions)."""
    from pyspark.sql import functions as F

    return events.groupBy("session_id").agg(
        F.min("media_id").alias("media_id"),
        F.min("user_id").alias("user_id"),
        F.min("ts").alias("started_at"),
        F.max("ts").alias("ended_at"),
        F.max("position_s").alias("watched_s"),
        F.coalesce(F.bool_or(F.col("event_type") == "complete"), F.lit(False)).alias("completed"),
    )


def _ratio(total: str, count: str) -> Column:
    """total / count rounded, null where count is 0 (as aggregates._ratio)."""
    from pyspark.sql import functions as F

    return _round(F.when(F.col(count) > 0, F.col(total) / F.col(count)))


def hourly_stats(events: DataFrame) -> DataFrame:
    """Views, exact unique viewers, watch time and completion per title-hour."""
    from pyspark.sql import functions as F

    return (
        sessions(events)
        .withColumn("hour", F.date_trunc("hour", "started_at"))
        .groupBy("media_id", "hour")
        .agg(
            F.count(F.lit(1)).alias("views"),
            F.countDistinct("user_id").alias("unique_viewers"),
            _round(F.coalesce(F.sum("watched_s"), F.lit(0.0))).alias("watch_time_s"),
            F.count("watched_s").alias("timed"),
            F.sum(F.col("completed").cast("long")).alias("completions"),
        )
        .select(
            "media_id",
            "hour",
            "views",
            "unique_viewers",
            "watch_time_s",
            _ratio("watch_time_s", "timed").alias("avg_watch_time_s"),
            _ratio("completions", "views").alias("completion_rate"),
        )
        .orderBy("media_id", "hour")
    )


def user_stats(events: DataFrame) -> DataFrame:
    """Per viewer: sessions, distinct titles, watch time, completion rate, last event time."""
    from pyspark.sql import functions as F

    return (
        sessions(events)
        .where(F.col("user_id").isNotNull())
        .groupBy("user_id")
        .agg(
            F.count(F.lit(1)).alias("sessions"),
            F.countDistinct("media_id").alias("titles"),
            _round(F.coalesce(F.sum("watched_s"), F.lit(0.0))).alias("watch_time_s"),
            F.sum(F.col("completed").cast("long")).alias("completions"),
            F.max("ended_at").alias("last_seen"),
        )
        .select(
            "user_id",
            "sessions",
            "titles",
            "watch_time_s",
            _ratio("completions", "sessions").alias("completion_rate"),
            "last_seen",
        )
        .orderBy("user_id")
    )


def co_watch(events: DataFrame, window_h: float = 24) -> DataFrame:
    """Title pairs one viewer started within window_h hours (see aggregates.co_watch for the weight)."""
    from pyspark.sql import functions as F

    firsts = (
        sessions(events)
        .dropna(subset=["user_id", "media_id", "started_at"])
        .groupBy("user_id", "media_id")
        .agg(F.unix_micros(F.min("started_at")).alias("first_us"))
    )
    a = firsts.select("user_id", F.col("media_id").alias("media_a"), F.col("first_us").alias("t_a"))
    b = firsts.select("user_id", F.col("media_id").alias("media_b"), F.col("first_us").alias("t_b"))
    pairs = (
        a.join(b, "user_id")
        .where(
            (F.col("media_a") < F.col("media_b"))
            & (F.abs(F.col("t_a") - F.col("t_b")) <= window_us(window_h))
        )
        .groupBy("media_a", "media_b")
        .agg(F.count(F.lit(1)).alias("viewers"))
    )
    audience = firsts.groupBy("media_id").agg(F.count(F.lit(1)).alias("n"))
    n_a = audience.select(F.col("media_id").alias("media_a"), F.col("n").alias("n_a"))
    n_b = audience.select(F.col("media_id").alias("media_b"), F.col("n").alias("n_b"))
    weight = F.col("viewers") / F.sqrt(F.col("n_a") * F.col("n_b"))
    return (
        pairs.join(n_a, "media_a")
        .join(n_b, "media_b")
        .select("media_a", "media_b", "viewers", _round(weight).alias("weight"))
        .orderBy("media_a", "media_b")
    )


def aggregate(
    settings: Settings, window_h: float = 24, spark: SparkSession | None = None
) -> dict[str, pl.DataFrame]:
    """The three aggregates of view_events through Spark, as Polars frames shaped as their tables."""
    session = spark or spark_session(settings.spark_remote)
    events = read_delta(session, settings, "view_events")
    plans = {
        "hourly_stats": hourly_stats(events),
        "user_stats": user_stats(events),
        "co_watch": co_watch(events, window_h),
    }
    return {name: to_polars(name, plans[name]) for name in AGGREGATES}
