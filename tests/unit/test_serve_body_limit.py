"""The body limit holds before routing, for declared and chunked bodies alike (ASGI, no Serve)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
from fastapi import FastAPI, Request

from lake.settings import Settings
from serve.common import make_app


def app_with_routes(settings: Settings) -> FastAPI:
    app = make_app("t", "body limit", settings.serve)

    @app.get("/only-get")
    def only_get() -> dict[str, int]:
        return {"ok": 1}

    @app.post("/echo")
    async def echo(request: Request) -> dict[str, int]:
        return {"bytes": len(await request.body())}

    return app


def test_chunked_and_declared_bodies_over_the_limit_are_413_on_any_route(settings: Settings) -> None:
    limit = settings.serve.max_body_bytes

    async def chunks(total: int) -> AsyncIterator[bytes]:  # no Content-Length: chunked
        for start in range(0, total, 65536):
            yield b"y" * min(65536, total - start)

    async def calls() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app_with_routes(settings))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return [
                await client.post("/only-get", content=chunks(limit + 1)),  # routing alone would say 405
                await client.post("/nowhere", content=chunks(limit + 1)),  # ... or 404
                await client.post("/echo", content=b"x" * (limit + 1)),
                await client.post("/echo", content=chunks(limit)),  # exactly the limit passes, whole
                await client.get("/only-get"),
            ]

    too_big_get, too_big_404, declared, at_limit, plain = asyncio.run(calls())
    for response in (too_big_get, too_big_404, declared):
        assert response.status_code == 413 and response.json()["field"] == "body", response.text
    assert at_limit.status_code == 200 and at_limit.json() == {"bytes": limit}
    assert plain.status_code == 200
