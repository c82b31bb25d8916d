"""The API is served behind HAProxy (Ray Serve's throughput-optimised ingress) by default."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import psutil

from models.settings import Settings
from serving.run import HAPROXY_INGRESS, RAY_OWN_PORTS, ingress_environment


def test_haproxy_listens_on_the_api_port_and_answers(api_url: str, client: httpx.Client) -> None:
    port = urlsplit(api_url).port
    listening = [c for c in psutil.net_connections("tcp") if c.status == psutil.CONN_LISTEN]
    listeners = {c.pid for c in listening if c.laddr.port == port}
    assert {psutil.Process(pid).name() for pid in listeners} == {"haproxy"}
    assert client.get("/health").status_code == 200


def test_haproxy_files_go_to_a_private_dir_and_its_listeners_to_free_ports(
    serving_settings: Settings,
) -> None:
    env = ingress_environment(serving_settings)
    assert HAPROXY_INGRESS.items() <= env.items()
    files = Path(env["RAY_SERVE_HAPROXY_SOCKET_PATH"]).parent
    assert stat.S_IMODE(os.stat(files).st_mode) == 0o700  # the admin socket inside is mode 666
    assert len(env["RAY_SERVE_HAPROXY_SOCKET_PATH"]) + 57 < 97  # Ray adds a 56-character folder
    ports = {env["RAY_SERVE_HAPROXY_STATS_PORT"], env["RAY_SERVE_HAPROXY_METRICS_PORT"]}
    assert len(ports) == 2 and not {int(port) for port in ports} & (RAY_OWN_PORTS | {8404, 9101})
    files.rmdir()
    assert ingress_environment(serving_settings.model_copy(update={"serve_ingress": "proxy"})) == {}
