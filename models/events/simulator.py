"""A deterministic viewing-event simulator: users with tiers, countries and devices; sessions that
pick a title by Zipf popularity and genre taste, play with 2 s heartbeats, sometimes seek, and end
in a pause or a completion.

Same seed and catalog in, same events (and event_ids) out, so a re-run inserts nothing. Every
random draw is a hash of (seed, user, session number, purpose), not a position in a generator's
stream, so the events do not depend on how users are chunked: `iter_events` yields them a block of
users at a time (10M+ events never sit in memory at once) and `simulate_events` is just their
concatenation.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl

EPOCH = datetime(2026, 11, 1, tzinfo=UTC)
NAMESPACE = uuid.UUID("6f1d7c1e-2b1a-4e55-9a3e-5b0c8f1e2d77")
TIERS = ("free", "premium")
COUNTRIES = ("US", "GB", "DE", "FR", "IN", "BR", "JP")
DEVICES = ("web", "ios", "android", "tv")
HEARTBEAT_S = 2.0
SIMULATED_PREFIX = "sim-"  # session ids the simulator owns (and may replace)
EVENT_COLUMNS = {
    "event_id": pl.String,
    "user_id": pl.String,
    "media_id": pl.String,
    "session_id": pl.String,
    "event_type": pl.String,
    "position_s": pl.Float64,
    "ts": pl.Datetime("us", "UTC"),
    "device": pl.String,
    "tier": pl.String,
}
# (sessions in a block) x (titles) noise values drawn at once: bounds the title-choice memory.
CHOICE_CELLS = 4_000_000
# What a hashed draw is for: one salt per purpose keeps the draws of one session independent.
_SESSIONS, _START, _COMPLETES, _FRACTION, _SEEKS, _SEEK_STEP, _SEEK_JUMP = range(1, 8)


@dataclass(frozen=True)
class SimulationConfig:
    n_users: int = 200
    days: int = 2
    sessions_per_user: float = 6.0
    zipf_a: float = 1.2  # popularity ~ rank^(-1/zipf_a): smaller is more skewed
    taste_weight: float = 0.6  # how much more a viewer picks titles of a genre they like
    liked_genre_share: float = 0.25  # chance a viewer likes any one genre
    completion_rate: float = 0.45  # sessions that reach the end; the rest stop at Beta(2, 2)
    seek_rate: float = 0.15  # sessions with one seek (a rewind or a skip of up to 30 s)
    seed: int = 42


def simulate_users(config: SimulationConfig) -> pl.DataFrame:
    rng = np.random.default_rng(config.seed)
    n = config.n_users
    return pl.DataFrame(
        {
            "user_id": [f"u{i:05d}" for i in range(n)],
            "tier": rng.choice(TIERS, size=n, p=[0.7, 0.3]).tolist(),
            "country": rng.choice(COUNTRIES, size=n).tolist(),
            "device": rng.choice(DEVICES, size=n, p=[0.4, 0.25, 0.25, 0.1]).tolist(),
            "signup_ts": [EPOCH - timedelta(days=int(d)) for d in rng.integers(1, 365, size=n)],
        }
    )


def _hash64(*parts: object) -> int:
    """A stable 64-bit key (Python's hash() changes per process)."""
    return int.from_bytes(hashlib.sha256(":".join(map(str, parts)).encode()).digest()[:8], "little")


def hash_keys(*parts: object, values: list[str]) -> np.ndarray:
    """A 64-bit key per value, salted by parts: what every draw about that value is hashed from."""
    return np.array([_hash64(*parts, v) for v in values], dtype=np.uint64)


def _mix(keys: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a well-spread 64-bit hash of each key."""
    with np.errstate(over="ignore"):
        z = keys.astype(np.uint64)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def hashed_uniform(keys: np.ndarray, salt: int = 0) -> np.ndarray:
    """Deterministic uniforms in (0, 1), one per key (and purpose salt)."""
    with np.errstate(over="ignore"):
        z = _mix(keys.astype(np.uint64) + np.uint64(salt) * np.uint64(0x9E3779B97F4A7C15))
    return ((z >> np.uint64(11)).astype(np.float64) + 0.5) / 2.0**53


def genres_from_labels(catalog: pl.DataFrame, labels: pl.DataFrame) -> pl.DataFrame:
    """The catalog with `tags` extended by each title's genre labels (content_labels, kind genre).

    Viewers' taste is per genre, so a title the analysis stage calls "documentary" draws the
    documentary lovers even when its sidecar had no tags.
    """
    genres = (
        labels.filter(pl.col("kind") == "genre")
        .group_by("media_id")
        .agg(pl.col("label").sort().alias("genres"))
    )
    return (
        catalog.join(genres, on="media_id", how="left")
        .with_columns(
            pl.concat_list(pl.col("tags").fill_null([]), pl.col("genres").fill_null([]))
            .list.unique(maintain_order=True)
            .alias("tags")
        )
        .drop("genres")
    )


@dataclass(frozen=True)
class _Catalog:
    """The catalog as arrays: ids, durations, hashed keys, log popularity and a genre incidence."""

    media_ids: np.ndarray
    durations: np.ndarray
    item_keys: np.ndarray
    log_popularity: np.ndarray
    genre_keys: np.ndarray
    incidence: np.ndarray  # genres x titles, 1.0 where the title has the genre

    @classmethod
    def of(cls, catalog: pl.DataFrame, config: SimulationConfig) -> _Catalog:
        """Appeal comes from hashes of ids, not catalog positions: adding a title leaves every
        other title's appeal, and so most simulated sessions, unchanged."""
        catalog = catalog.filter(pl.col("duration_s") > 0).sort("media_id")
        ids = catalog["media_id"].to_list()
        tags = [t or [] for t in catalog["tags"].to_list()]
        genres = sorted({g for t in tags for g in t})
        incidence = np.zeros((len(genres), len(ids)))
        index = {g: i for i, g in enumerate(genres)}
        for item, item_tags in enumerate(tags):
            incidence[[index[g] for g in item_tags], item] = 1.0
        return cls(
            media_ids=np.array(ids, dtype=object),
            durations=catalog["duration_s"].to_numpy().astype(np.float64),
            item_keys=hash_keys(values=ids),
            log_popularity=np.log(hashed_uniform(hash_keys(config.seed, values=ids))) * (-1 / config.zipf_a),
            genre_keys=hash_keys(config.seed, "genre", values=genres),
            incidence=incidence,
        )

    def choose(self, user_keys: np.ndarray, session_keys: np.ndarray, config: SimulationConfig) -> np.ndarray:
        """Each session's title: Gumbel-max over log(popularity) + log(1 + taste boost) + noise.

        The noise is a hash of (session, title), so a new title changes only the sessions it wins.
        """
        with np.errstate(over="ignore"):
            user_genre = user_keys[:, None] * np.uint64(0xD6E8FEB86659FD93) ^ self.genre_keys[None, :]
            session_item = self.item_keys[None, :] * np.uint64(0x9E3779B97F4A7C15) ^ session_keys[:, None]
            likes = hashed_uniform(user_genre)
            noise = hashed_uniform(session_item)
        liked = (likes < config.liked_genre_share).astype(np.float64) @ self.incidence > 0
        boost = np.log1p(config.taste_weight * 10 * liked)
        return np.argmax(self.log_popularity[None, :] + boost - np.log(-np.log(noise)), axis=1)


def _sessions(users: pl.DataFrame, catalog: _Catalog, config: SimulationConfig) -> pl.DataFrame:
    """One row per session of these users: who, what, when, how far, and its one seek if any."""
    from scipy import stats

    user_keys = hash_keys(config.seed, values=users["user_id"].to_list())
    draws = hashed_uniform(user_keys, _SESSIONS)
    counts = stats.poisson.ppf(draws, config.sessions_per_user).astype(np.int64)
    owner = np.repeat(np.arange(users.height), counts)
    number = np.arange(owner.size) - np.repeat(np.cumsum(counts) - counts, counts)
    with np.errstate(over="ignore"):
        keys = _mix(user_keys[owner] ^ _mix(number.astype(np.uint64) + np.uint64(1)))
    block = max(1, CHOICE_CELLS // max(1, catalog.media_ids.size))
    item = np.concatenate(
        [np.zeros(0, dtype=np.int64)]
        + [
            catalog.choose(user_keys[owner[i : i + block]], keys[i : i + block], config)
            for i in range(0, owner.size, block)
        ]
    )
    duration = catalog.durations[item]
    completes = hashed_uniform(keys, _COMPLETES) < config.completion_rate
    fraction = stats.beta.ppf(hashed_uniform(keys, _FRACTION), 2, 2)
    watched = np.where(completes, duration, np.maximum(0.5, np.round(fraction * duration, 3)))
    # one seek at a heartbeat after the first, jumping at most 30 s back or ahead, never past the end
    plain_steps = np.ceil(watched / HEARTBEAT_S).astype(np.int64)
    seeks = (hashed_uniform(keys, _SEEKS) < config.seek_rate) & (plain_steps >= 3)
    seek_step = 1 + np.floor(hashed_uniform(keys, _SEEK_STEP) * (plain_steps - 2)).astype(np.int64)
    reached = seek_step * HEARTBEAT_S
    jump = np.round((2 * hashed_uniform(keys, _SEEK_JUMP) - 1) * 30.0, 3)
    jump = np.where(seeks, np.clip(jump, -reached, watched - reached - 0.001), 0.0)
    steps = np.ceil((watched - jump) / HEARTBEAT_S).astype(np.int64)  # events before the last
    media_ids = catalog.media_ids[item]
    user_ids = users["user_id"].to_numpy()[owner]
    session_ids = [
        SIMULATED_PREFIX + str(uuid.uuid5(NAMESPACE, f"{config.seed}:{u}:{n}:{m}"))
        for u, n, m in zip(user_ids, number.tolist(), media_ids, strict=True)
    ]
    return pl.DataFrame(
        {
            "user_id": user_ids,
            "media_id": media_ids,
            "session_id": session_ids,
            "device": users["device"].to_numpy()[owner],
            "tier": users["tier"].to_numpy()[owner],
            "start_us": np.round(hashed_uniform(keys, _START) * config.days * 86_400e6).astype(np.int64),
            "watched": watched,
            "completes": completes,
            "seek_step": np.where(seeks, seek_step, -1),
            "jump": jump,
            "steps": steps,
        },
        schema_overrides={"user_id": pl.String, "media_id": pl.String},
    )


def _expand(sessions: pl.DataFrame) -> pl.DataFrame:
    """Sessions to events: play, heartbeats every 2 s of wall clock (a seek moves the position, not
    the clock), then pause or complete at the furthest position reached."""
    steps = sessions["steps"].to_numpy()
    counts = steps + 1
    owner = np.repeat(np.arange(sessions.height), counts)
    k = np.arange(owner.size) - np.repeat(np.cumsum(counts) - counts, counts)
    seek_step, jump = sessions["seek_step"].to_numpy()[owner], sessions["jump"].to_numpy()[owner]
    last = k == steps[owner]
    moved = (seek_step >= 0) & (k >= seek_step)
    heartbeat_position = np.round(k * HEARTBEAT_S + np.where(moved, jump, 0.0), 3)
    watched = sessions["watched"].to_numpy()[owner]
    position = np.where(last, watched, heartbeat_position)
    # the last event comes as long after the previous one as the position moved since it
    previous = np.round((k - 1) * HEARTBEAT_S + np.where(moved, jump, 0.0), 3)
    elapsed = np.where(last & (k > 0), (k - 1) * HEARTBEAT_S + (watched - previous), k * HEARTBEAT_S)
    kind = np.select(
        [k == 0, last & sessions["completes"].to_numpy()[owner], last, k == seek_step],
        ["play", "complete", "pause", "seek"],
        "heartbeat",
    )
    epoch_us = int(EPOCH.timestamp()) * 1_000_000
    ts_us = epoch_us + sessions["start_us"].to_numpy()[owner] + np.round(elapsed * 1e6).astype(np.int64)
    return (
        sessions.select("user_id", "media_id", "session_id", "device", "tier")[owner]
        .with_columns(step=pl.Series(k))
        .with_columns(
            event_id=pl.format("{}:{}", pl.col("session_id"), pl.col("step")),
            event_type=pl.Series(kind),
            position_s=pl.Series(position),
            ts=pl.from_epoch(pl.Series(ts_us), "us").dt.replace_time_zone("UTC"),
        )
        .select(list(EVENT_COLUMNS))
        .cast(EVENT_COLUMNS)  # type: ignore[arg-type]
    )


def iter_events(
    catalog: pl.DataFrame, users: pl.DataFrame, config: SimulationConfig, chunk_users: int = 4096
) -> Iterator[pl.DataFrame]:
    """Events for every user over config.days, `chunk_users` users at a time (sorted by user_id).

    catalog needs media_id, duration_s and tags (genres; see genres_from_labels). A session's
    title, length and seek depend only on (seed, user, session number, catalog), and its id names
    its title, so a grown catalog changes only the sessions the new title wins.
    """
    if catalog.is_empty() or users.is_empty():
        return
    items = _Catalog.of(catalog, config)
    users = users.sort("user_id")
    for start in range(0, users.height, chunk_users):
        yield _expand(_sessions(users.slice(start, chunk_users), items, config))


def simulate_events(catalog: pl.DataFrame, users: pl.DataFrame, config: SimulationConfig) -> pl.DataFrame:
    """All of iter_events at once: for catalogs and user counts that fit in memory."""
    return pl.concat([pl.DataFrame(schema=EVENT_COLUMNS), *iter_events(catalog, users, config)])
