"""A deterministic viewing-event simulator: users with tiers and devices, Zipf-popular titles,
taste for tags, sessions that play, heartbeat and sometimes finish.

Same seed and catalog in, same events (and event_ids) out, so a re-run inserts nothing.
"""

from __future__ import annotations

import hashlib
import uuid
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


@dataclass(frozen=True)
class SimulationConfig:
    n_users: int = 200
    days: int = 2
    sessions_per_user: float = 6.0
    zipf_a: float = 1.2
    taste_weight: float = 0.6
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


def _uniform(keys: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser -> uniforms in (0, 1): deterministic noise per (session, item) key."""
    with np.errstate(over="ignore"):
        z = keys.astype(np.uint64)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return ((z >> np.uint64(11)).astype(np.float64) + 0.5) / 2.0**53


def _log_weights(catalog: pl.DataFrame, user_id: str, config: SimulationConfig) -> np.ndarray:
    """Zipf-like popularity per title times a boost for tags this user likes.

    Both come from hashes of ids, not from positions in the catalog, so adding a title leaves
    every other title's appeal, and so most simulated sessions, unchanged.
    """
    ids = catalog["media_id"].to_list()
    popularity = np.array([_uniform(np.array([_hash64(config.seed, m)]))[0] for m in ids]) ** (
        -1 / config.zipf_a
    )
    likes = [
        any(_uniform(np.array([_hash64(config.seed, user_id, tag)]))[0] < 0.25 for tag in tags or [])
        for tags in catalog["tags"].to_list()
    ]
    return np.log(popularity) + np.log1p(config.taste_weight * 10 * np.array(likes, dtype=float))


def simulate_events(catalog: pl.DataFrame, users: pl.DataFrame, config: SimulationConfig) -> pl.DataFrame:
    """Events for every user over config.days; catalog needs media_id, duration_s, tags.

    Each session draws from its own seeded generator and picks its title by Gumbel-max over
    hashed noise, so a session's content depends only on (seed, user, session number, catalog)
    and its id names its title: a grown catalog changes only the sessions the new title wins.
    """
    columns = (
        "event_id",
        "user_id",
        "media_id",
        "session_id",
        "event_type",
        "position_s",
        "ts",
        "device",
        "tier",
    )
    rows: dict[str, list] = {k: [] for k in columns}
    catalog = catalog.sort("media_id")
    media_ids = catalog["media_id"].to_list()
    item_keys = np.array([_hash64(m) for m in media_ids], dtype=np.uint64)
    durations = catalog["duration_s"].to_numpy()
    for user in users.sort("user_id").iter_rows(named=True) if media_ids else []:
        rng = np.random.default_rng([config.seed, _hash64(user["user_id"])])
        log_weights = _log_weights(catalog, user["user_id"], config)
        for s in range(rng.poisson(config.sessions_per_user)):
            session_key = np.uint64(rng.integers(0, 2**63))
            with np.errstate(over="ignore"):
                gumbel = -np.log(-np.log(_uniform(item_keys * np.uint64(0x9E3779B97F4A7C15) ^ session_key)))
            item = int(np.argmax(log_weights + gumbel))
            start = EPOCH + timedelta(seconds=float(rng.uniform(0, config.days * 86_400)))
            completes, fraction = rng.random() < 0.45, float(rng.beta(2, 2))
            duration = float(durations[item])
            watched = duration if completes else max(0.5, round(fraction * duration, 3))
            positions = [*np.arange(0.0, watched, HEARTBEAT_S).round(3).tolist(), watched]
            kinds = ["play", *["heartbeat"] * (len(positions) - 2), "complete" if completes else "pause"]
            session_id = SIMULATED_PREFIX + str(
                uuid.uuid5(NAMESPACE, f"{config.seed}:{user['user_id']}:{s}:{media_ids[item]}")
            )
            for i, (kind, position) in enumerate(zip(kinds, positions, strict=True)):
                rows["event_id"].append(str(uuid.uuid5(NAMESPACE, f"{session_id}:{i}")))
                rows["user_id"].append(user["user_id"])
                rows["media_id"].append(media_ids[item])
                rows["session_id"].append(session_id)
                rows["event_type"].append(kind)
                rows["position_s"].append(float(position))
                rows["ts"].append(start + timedelta(seconds=float(position)))
                rows["device"].append(user["device"])
                rows["tier"].append(user["tier"])
    return pl.DataFrame(
        rows,
        schema={
            k: pl.Datetime("us", "UTC") if k == "ts" else pl.Float64 if k == "position_s" else pl.String
            for k in columns
        },
    )
