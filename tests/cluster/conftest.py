"""Shared by the cluster-profile tests: a throwaway redis-server on loopback, a port probe."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest

from serving.run import free_port


def listening(port: int, timeout_s: float) -> bool:
    """Whether something accepts connections on the loopback port within timeout_s."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.1)
    return False


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A throwaway redis-server on loopback (no persistence), stopped afterwards."""
    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("no redis-server: apt-get install redis-server")
    port = free_port()
    work = tmp_path_factory.mktemp("redis")
    args = [server, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
            "--dir", str(work)]  # fmt: skip
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        if not listening(port, 20):
            pytest.fail(f"redis-server did not listen on {port}")
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)
