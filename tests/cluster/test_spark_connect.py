"""The cluster profile's Spark path for real: start the Spark Connect server that pip's pyspark
ships, on 127.0.0.1, point SPARK_REMOTE at it, and get the same aggregates as Polars."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

from models.events.aggregates import AGGREGATES, aggregate
from models.events.simulator import SimulationConfig, simulate_events, simulate_users
from models.lake import tables
from models.settings import Settings, get_settings
from serving.run import free_port
from tests.cluster.conftest import listening

pytestmark = pytest.mark.cluster
START_TIMEOUT_S = 120


@pytest.fixture(scope="module")
def spark_remote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Spark Connect server from pyspark's own sbin/, on loopback, stopped afterwards."""
    import pyspark

    if shutil.which("java") is None:
        pytest.skip("no Java runtime: apt-get install default-jre-headless")
    home = Path(pyspark.__file__).parent
    port = free_port()
    work = tmp_path_factory.mktemp("spark-connect")
    env = {**os.environ, "SPARK_HOME": str(home), "SPARK_LOG_DIR": str(work), "SPARK_PID_DIR": str(work),
           "SPARK_LOCAL_IP": "127.0.0.1"}  # fmt: skip
    conf = ["--master", "local[2]", "--conf", "spark.connect.grpc.binding.address=127.0.0.1",
            "--conf", f"spark.connect.grpc.binding.port={port}",
            "--conf", "spark.ui.enabled=false"]  # fmt: skip
    subprocess.run(["bash", str(home / "sbin" / "start-connect-server.sh"), *conf], env=env, check=True)
    try:
        if not listening(port, START_TIMEOUT_S):
            logs = "\n".join(p.read_text()[-2000:] for p in work.glob("*.out"))
            pytest.fail(f"Spark Connect did not listen on {port} within {START_TIMEOUT_S} s:\n{logs}")
        yield f"sc://127.0.0.1:{port}"
    finally:
        subprocess.run(["bash", str(home / "sbin" / "stop-connect-server.sh")], env=env, check=False)


def test_the_spark_path_through_spark_connect_matches_polars(spark_remote: str, tmp_path: Path) -> None:
    lake: Settings = get_settings(data_dir=tmp_path, spark_remote=spark_remote)
    catalog = pl.DataFrame(
        {"media_id": [f"m{i:02d}" for i in range(20)], "duration_s": [30.0] * 20, "tags": [["t"]] * 20}
    )
    config = SimulationConfig(n_users=40, days=1)
    tables.insert_new(lake, "view_events", simulate_events(catalog, simulate_users(config), config))
    from models.events.spark_aggregates import spark_session

    session = spark_session(spark_remote)  # the one aggregate() gets; stopped before the server
    try:
        ours = aggregate(lake, "polars")
        theirs = aggregate(lake, "spark")
    finally:
        session.stop()
    for name in AGGREGATES:
        assert ours[name].height > 0 and ours[name].equals(theirs[name]), name
