"""A deterministic viewing-event simulator: users with tiers and devices, Zipf-popular titles,
taste for tags, sessions that play, heartbeat and sometimes finish.

Same seed and catalog in, same events (and event_ids) out, so a re-run inserts nothing.
"""

from __future__ import annotations

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


def _choice_weights(catalog: pl.DataFrame, config: SimulationConfig, rng: np.random.Generator) -> np.ndarray:
    """Per-user item weights: a shared Zipf popularity times a taste boost for one tag."""
    n_items = catalog.height
    popularity = 1.0 / np.arange(1, n_items + 1) ** config.zipf_a
    popularity = popularity[rng.permutation(n_items)]
    tags = catalog["tags"].to_list()
    all_tags = sorted({t for item_tags in tags for t in (item_tags or [])}) or ["none"]
    liked = rng.integers(0, len(all_tags), size=config.n_users)
    has_tag = np.array([[t in (item_tags or []) for item_tags in tags] for t in all_tags], dtype=float)
    weights = popularity[None, :] * (1.0 + config.taste_weight * 10 * has_tag[liked])
    return weights / weights.sum(axis=1, keepdims=True)


def simulate_events(catalog: pl.DataFrame, users: pl.DataFrame, config: SimulationConfig) -> pl.DataFrame:
    """Events for every user over config.days; catalog needs media_id, duration_s, tags."""
    catalog = catalog.sort("media_id")
    rng = np.random.default_rng(config.seed + 1)
    weights = _choice_weights(catalog, config, rng)
    media_ids = catalog["media_id"].to_list()
    durations = catalog["duration_s"].to_numpy()
    rows: dict[str, list] = {
        k: []
        for k in (
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
    }
    horizon_s = config.days * 86_400
    for u, user in enumerate(users.iter_rows(named=True)):
        for s in range(rng.poisson(config.sessions_per_user)):
            item = rng.choice(len(media_ids), p=weights[u])
            duration = float(durations[item])
            start = EPOCH + timedelta(seconds=float(rng.uniform(0, horizon_s)))
            watched = (
                duration if rng.random() < 0.45 else max(0.5, round(float(rng.beta(2, 2) * duration), 3))
            )
            positions = [*np.arange(0.0, watched, HEARTBEAT_S).round(3).tolist(), watched]
            kinds = [
                "play",
                *["heartbeat"] * (len(positions) - 2),
                "complete" if watched >= duration else "pause",
            ]
            session_id = str(uuid.uuid5(NAMESPACE, f"{config.seed}:{user['user_id']}:{s}"))
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
    return pl.DataFrame(rows, schema_overrides={"ts": pl.Datetime("us", "UTC")})
