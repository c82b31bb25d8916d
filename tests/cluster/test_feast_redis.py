"""The cluster profile's online store for real: a redis-server on 127.0.0.1 (Debian's package),
STREAMLAKE_FEAST_REDIS pointed at it, and Feast materializing into it and serving from it."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.features import store
from models.lake.tables import upsert
from models.settings import get_settings

pytestmark = pytest.mark.cluster


def test_feast_serves_online_features_from_redis(redis_url: str, tmp_path: Path) -> None:
    from tests.unit.test_features import HOURLY, USERS, stats

    settings = get_settings(data_dir=tmp_path, feast_redis=redis_url)
    assert store.config_dict(settings)["online_store"] == {"type": "redis", "connection_string": redis_url}
    upsert(settings, "hourly_stats", HOURLY)
    upsert(settings, "users", USERS)
    summary = store.apply_and_materialize(settings)
    assert {"media_hourly_stats", "user_profile"} <= set(summary["materialized_views"])
    assert not store.online_store_path(settings).exists(), "nothing went to SQLite"
    online = store.online_features(settings, ["m1", "unknown"])
    assert online.row(0, named=True) == {k: v for k, v in stats("m1", 3, 20, 0.6).items() if k != "hour"}
    assert online.row(1, named=True)["views"] is None
    again = store.apply_and_materialize(settings)
    assert again["materialized_views"] == [], "the recorded versions make a re-run load nothing"
