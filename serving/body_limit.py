"""A request-body size limit for the API, as plain ASGI middleware.

FastAPI reads and parses a whole body before any route code runs, so without a limit one POST of
hundreds of megabytes is held in memory, parsed, and (for /events) written to the lake. This answers
413 instead: at once when Content-Length says too much, and as soon as the received bytes pass the
limit when the body comes chunked without a length.
"""

from __future__ import annotations

from fastapi import HTTPException
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

TOO_LARGE = 413


class BodyLimit:
    """Refuse request bodies over max_bytes with 413 before they are parsed."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _detail(self) -> str:
        return f"request body over {self.max_bytes} bytes"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await JSONResponse({"detail": self._detail()}, status_code=TOO_LARGE)(scope, receive, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # FastAPI lets an HTTPException from reading the body through as the response
                    raise HTTPException(status_code=TOO_LARGE, detail=self._detail())
            return message

        await self.app(scope, counted, send)
