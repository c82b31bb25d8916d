"""The API's request-body limit on a bare FastAPI app: 413 by Content-Length and by counting."""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import FastAPI
from fastapi.testclient import TestClient

from serving.body_limit import BodyLimit

LIMIT = 100


def _client() -> TestClient:
    app = FastAPI()
    app.add_middleware(BodyLimit, max_bytes=LIMIT)

    @app.post("/echo")
    async def echo(body: dict[str, str]) -> dict[str, int]:
        return {"keys": len(body)}

    return TestClient(app)


def _chunks(total: int) -> Iterator[bytes]:
    yield b'{"a": "'
    for _ in range(total // 10):
        yield b"x" * 10
    yield b'"}'


def test_small_bodies_pass_and_large_ones_are_413_by_length_or_by_count() -> None:
    client = _client()
    assert client.post("/echo", json={"a": "b"}).json() == {"keys": 1}
    assert client.post("/echo", json={"a": "x" * LIMIT}).status_code == 413
    chunked = client.post("/echo", content=_chunks(10 * LIMIT), headers={"Content-Type": "application/json"})
    assert chunked.status_code == 413
    assert client.get("/echo").status_code == 405  # bodiless requests are untouched
