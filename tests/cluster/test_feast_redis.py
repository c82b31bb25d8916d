"""The cluster profile's online store for real: a redis-server on 127.0.0.1 (Debian's package),
STREAMLAKE_FEAST_REDIS pointed at it, and Feast materializing into it and serving from it."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from models.features import store
from models.lake.tables import upsert
from models.settings import get_settings
from tests.cluster.test_spark_connect import _free_port

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A throwaway redis-server on loopback (no persistence), stopped afterwards."""
    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("no redis-server: apt-get install redis-server")
    port = _free_port()
    work = tmp_path_factory.mktemp("redis")
    args = [server, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
            "--dir", str(work)]  # fmt: skip
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        else:
            pytest.fail(f"redis-server did not listen on {port}")
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


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
