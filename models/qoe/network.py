"""Playback beacons simulated over a per-device-class network model, for sessions that exist.

Each session (from view_events) streams its title's ladder over a throughput drawn for its device
class; the ABR picks rungs from the throughput it last measured, so a rung above what the network
delivers stalls. The model, per session:

- throughput c = median * exp(sigma * z), z ~ N(0, 1), per class (NETWORKS); the playback is cut
  into INTERVALS equal intervals, each with c_i = c * exp(VARIATION * z_i)
- rung of interval 0: the highest rung with bitrate <= SAFETY * c_0 (the player's first probe);
  of interval i > 0: the same rule on c_{i-1} (the player only knows the past); rungs taller than the
  player are skipped, and the lowest rung is taken when none fits
- startup = latency + SEGMENT_S * bitrate_0 / c_0 (the first segment's download)
- exit before start when startup > patience, patience = 2 s + Exp(mean PATIENCE_S) (abandonment
  starts at about 2 s: Krishnan and Sitaraman, IMC 2012)
- stall in interval i = max(0, L * (bitrate_i / c_i - 1)), L the interval's length (no buffer credit)
- fatal_error with FATAL_RATE at a uniform point of the playback (which ends there); a non-fatal
  error with ERROR_RATE

Every draw is a hash of (seed, session_id, purpose) (models/events/simulator's scheme), so a
session's beacons do not depend on which other sessions are simulated alongside it.
"""

from dataclasses import dataclass

import numpy as np
import polars as pl
from scipy import stats

from models.events.aggregates import sessions as view_sessions
from models.events.ingest import BEACON_SCHEMA
from models.events.simulator import SIMULATED_PREFIX, hash_keys, hashed_uniform
from models.qoe.metrics import device_class

INTERVALS = 4
SAFETY = 0.8
SEGMENT_S = 4.0
VARIATION = 0.35
PATIENCE_S = 10.0
FATAL_RATE = 0.01
ERROR_RATE = 0.03
_THROUGHPUT, _PATIENCE, _FATAL, _FATAL_AT, _ERROR = range(1, 6)
_INTERVAL = 10  # salts _INTERVAL + i: interval i's throughput


@dataclass(frozen=True)
class Network:
    """A device class's connection (log-normal throughput, startup latency) and player size."""

    median_kbps: float
    sigma: float
    latency_s: float
    player_width: int
    player_height: int


DESKTOP = Network(15_000, 0.7, 0.3, 1920, 1080)
NETWORKS = {
    "mobile": Network(4_000, 0.9, 0.6, 1280, 720),
    "desktop": DESKTOP,
    "tv": Network(25_000, 0.6, 0.4, 3840, 2160),
    "other": DESKTOP,
}


def _normal(keys: np.ndarray, salt: int) -> np.ndarray:
    """Deterministic standard normals, one per key (and purpose salt)."""
    return stats.norm.ppf(hashed_uniform(keys, salt))


def _rungs(ladder: np.ndarray, heights: np.ndarray, budget: np.ndarray, player: np.ndarray) -> np.ndarray:
    """Per session, the index of the highest affordable rung no taller than the player (else 0).

    ladder and heights are sessions x rungs (bitrate ascending, padded with
    unaffordable rungs where a title has fewer)."""
    fits = (ladder <= budget[:, None]) & (heights <= player[:, None])
    return np.where(fits.any(axis=1), ladder.shape[1] - 1 - np.argmax(fits[:, ::-1], axis=1), 0)


def _ladders(ladders: pl.DataFrame, media_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(bitrate, width, height), each sessions x rungs, for each session's title (rows by bitrate)."""
    titles = (
        ladders.sort("media_id", "bitrate")
        .group_by("media_id", maintain_order=True)
        .agg("bitrate", "width", "height")
    )
    width = titles.select(pl.col("bitrate").list.len().max()).item()
    index = {m: i for i, m in enumerate(titles["media_id"].to_list())}
    rows = np.array([index[m] for m in media_ids], dtype=np.int64)

    def padded(name: str, fill: float) -> np.ndarray:
        lists = titles[name].to_list()
        table = np.array([[*values, *[fill] * (width - len(values))] for values in lists], dtype=np.float64)
        return table[rows]

    return padded("bitrate", np.inf), padded("width", 0), padded("height", np.inf)


def _frame(kind: str, mask: np.ndarray, offset_s: np.ndarray, **columns: np.ndarray) -> pl.DataFrame:
    """Beacons of one kind where mask (sessions, or sessions x intervals) holds, at offset_s seconds
    after the session's start; columns are per session or per session x interval."""
    grid = mask if mask.ndim == 2 else mask[:, None]
    rows, step = np.nonzero(grid)

    def pick(values: np.ndarray) -> np.ndarray:
        return values[rows, step] if values.ndim == 2 else values[rows]

    values = {name: pick(v) for name, v in columns.items()}
    return pl.DataFrame({"row": rows, "step": step, "event_type": kind, "offset_s": pick(offset_s), **values})


def simulate_beacons(sessions: pl.DataFrame, ladders: pl.DataFrame, seed: int) -> pl.DataFrame:
    """playback_beacons rows for sessions (session_id, user_id, media_id, device, tier, started_at,
    watched_s) whose title has a ladder (media_id, bitrate in bits/s, width, height)."""
    sessions = sessions.filter(pl.col("media_id").is_in(ladders["media_id"].implode())).sort("session_id")
    if sessions.is_empty():
        return pl.DataFrame(schema=BEACON_SCHEMA)
    keys = hash_keys(seed, "beacons", values=sessions["session_id"].to_list())
    net = [NETWORKS[c] for c in sessions.select(device_class(pl.col("device")))["device"].to_list()]
    player_width = np.array([n.player_width for n in net], dtype=np.float64)
    player_height = np.array([n.player_height for n in net], dtype=np.float64)
    base = np.array([n.median_kbps * 1000 for n in net]) * np.exp(
        np.array([n.sigma for n in net]) * _normal(keys, _THROUGHPUT)
    )
    throughput = np.stack(
        [base * np.exp(VARIATION * _normal(keys, _INTERVAL + i)) for i in range(INTERVALS)], 1
    )
    bitrate, width, height = _ladders(ladders, sessions["media_id"].to_numpy())
    budgets = SAFETY * np.column_stack([throughput[:, 0], throughput[:, :-1]])
    rung = np.stack([_rungs(bitrate, height, budgets[:, i], player_height) for i in range(INTERVALS)], 1)
    rate = np.take_along_axis(bitrate, rung, 1)
    startup = np.array([n.latency_s for n in net]) + SEGMENT_S * rate[:, 0] / throughput[:, 0]
    patience = 2.0 + stats.expon.ppf(hashed_uniform(keys, _PATIENCE), scale=PATIENCE_S)
    exited = startup > patience
    started = ~exited
    failed = started & (hashed_uniform(keys, _FATAL) < FATAL_RATE)
    watched = sessions["watched_s"].to_numpy().astype(np.float64)
    end = np.round(np.where(failed, hashed_uniform(keys, _FATAL_AT) * watched, watched), 3)
    length = watched / INTERVALS
    starts = np.round(length[:, None] * np.arange(INTERVALS), 3)
    middle = np.round(starts + length[:, None] / 2, 3)
    live = started[:, None] & ((starts < end[:, None]) | (np.arange(INTERVALS) == 0))
    playing = started[:, None] & (middle < end[:, None])
    stall = np.where(playing, np.round(length[:, None] * np.maximum(0.0, rate / throughput - 1), 3), 0.0)
    stalled = stall > 0
    before = np.cumsum(stall, 1) - stall  # stalled before each interval's middle
    switched = live & np.column_stack([np.ones(rung.shape[0], bool), rung[:, 1:] != rung[:, :-1]])
    lag = startup[:, None] + before  # wall clock minus position, within each interval

    def grid(values: np.ndarray) -> np.ndarray:
        return np.repeat(values[:, None], INTERVALS, 1)

    zeros = np.zeros(len(net))
    done = startup + end + stall.sum(1)
    players = {"player_width": player_width, "player_height": player_height}
    frames = [
        _frame("load_start", np.ones(len(net), bool), zeros, played_s=zeros),
        _frame("exit_before_start", exited, patience, duration_ms=patience * 1000),
        _frame("first_frame", started, startup, duration_ms=startup * 1000, played_s=zeros, **players),
        _frame(
            "rendition_switch",
            switched,
            starts + lag,
            played_s=starts,
            bitrate=rate,
            width=np.take_along_axis(width, rung, 1),
            height=np.take_along_axis(height, rung, 1),
            **{name: grid(v) for name, v in players.items()},
        ),
        _frame("rebuffer_start", stalled, middle + lag, played_s=middle),
        _frame("rebuffer_end", stalled, middle + lag + stall, played_s=middle, duration_ms=stall * 1000),
        _frame(
            "error",
            started & ~failed & (hashed_uniform(keys, _ERROR) < ERROR_RATE),
            startup + watched / 2,
            played_s=watched / 2,
        ),
        _frame("fatal_error", failed, done, played_s=end),
        _frame("view_end", started & ~failed, done, played_s=end),
    ]
    beacons = pl.concat(frames, how="diagonal_relaxed")
    meta = sessions.select("session_id", "user_id", "media_id", "device", "tier", "started_at")[
        beacons["row"]
    ]
    offset_us = (pl.col("offset_s") * 1e6).round().cast(pl.Int64)
    rows = pl.concat([beacons, meta], how="horizontal").with_columns(
        pl.format("{}:{}:{}", "session_id", "event_type", "step").alias("event_id"),
        (pl.col("started_at") + pl.duration(microseconds=offset_us)).alias("ts"),
        pl.col("played_s", "duration_ms").round(3),
    )
    columns = [
        pl.col(name).cast(dtype) if name in rows.columns else pl.lit(None, dtype).alias(name)
        for name, dtype in BEACON_SCHEMA.items()
    ]
    return rows.select(columns).sort("session_id", "ts", "event_id")


def simulated_sessions(events: pl.LazyFrame) -> pl.DataFrame:
    """simulate_beacons' sessions from view_events: the simulator's own sessions only (real
    players send their own beacons), with start, furthest position, device and tier."""
    simulated = events.filter(pl.col("session_id").str.starts_with(SIMULATED_PREFIX))
    who = simulated.group_by("session_id").agg(pl.col("device").min(), pl.col("tier").min())
    return (
        view_sessions(simulated)
        .join(who, on="session_id")
        .select("session_id", "user_id", "media_id", "device", "tier", "started_at", "watched_s")
        .collect()
    )


def video_ladders(renditions: pl.DataFrame, codec: str = "h264") -> pl.DataFrame:
    """Each title's ladder as simulate_beacons takes it: its `codec` video rungs that encoded."""
    return renditions.filter(
        (pl.col("kind") == "video") & (pl.col("codec") == codec) & pl.col("error").is_null()
    ).select("media_id", "bitrate", "width", "height")
