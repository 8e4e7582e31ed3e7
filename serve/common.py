"""What both Serve applications share: errors, body limit, bearer-token auth, metrics.

The applications are FastAPI apps behind a Serve deployment (`@serve.ingress`). Every error
leaves as JSON `{"error": ..., "field": ...}` with a 4xx/5xx status; a request never gets a
stack trace. Nothing here runs at import: the FastAPI app is built by `make_app` inside the
deployment's module and the Ray metrics are created in the replica's constructor.
"""

from __future__ import annotations

import hmac
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lake.settings import ServeSettings

log = logging.getLogger(__name__)

# The metrics the Serve replicas export through Ray's metrics agent, as Prometheus sees them
# (Ray adds the `ray_` prefix). Dashboards and alert rules reference these names.
METRIC_NAMES = (
    "ray_lakehouse_serve_requests",  # counter, tags: app, route, status
    "ray_lakehouse_serve_request_seconds",  # histogram (_bucket/_sum/_count), tags: app, route
    "ray_lakehouse_serve_rows_returned",  # counter, tags: table (data app)
    "ray_lakehouse_serve_predictions",  # counter, tags: model_version (model app)
    "ray_lakehouse_serve_batch_size",  # histogram: rows per model call (model app's @serve.batch)
    "ray_lakehouse_serve_model_info",  # gauge, 1 per replica and model_version it serves (0 once replaced)
    "ray_lakehouse_serve_inference_log_pending",  # gauge: predictions waiting for the inference table
)
LATENCY_BOUNDARIES_S = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]


class ApiError(Exception):
    """A client-facing error: HTTP status, a message naming the problem and the field at fault."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.field = status, message, field


def error_body(message: str, field: str | None = None) -> dict[str, Any]:
    return {"error": message, "field": field}


class BodyLimit:
    """Pure ASGI middleware: 413 for a body over `max_bytes`, declared or streamed.

    A declared Content-Length is refused before reading; a chunked body is counted as it arrives
    and refused as soon as it passes the limit, so at most `max_bytes` of it sits in memory.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None:
            try:
                too_big = int(declared) > self.max_bytes
            except ValueError:
                await self._refuse(send, 400, "Content-Length is not a number", "Content-Length")
                return
            if too_big:
                await self._refuse(send, 413, f"request body over the {self.max_bytes}-byte limit", "body")
            else:
                await self.app(scope, receive, send)  # the server stops at the declared length
            return
        # A chunked body is read (up to the limit) before routing: a route that never reads the body
        # (a 405, a 404) must not let an oversized upload through unnoticed.
        buffered: list[Message] = []
        seen = 0
        while True:
            message = await receive()
            buffered.append(message)
            if message["type"] != "http.request":
                break
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                await self._refuse(send, 413, f"request body over the {self.max_bytes}-byte limit", "body")
                return
            if not message.get("more_body", False):
                break

        async def replay() -> Message:
            return buffered.pop(0) if buffered else await receive()

        await self.app(scope, replay, send)

    @staticmethod
    async def _refuse(send: Send, status: int, message: str, field: str) -> None:
        response = JSONResponse(error_body(message, field), status_code=status)
        await response({"type": "http"}, _no_body, send)


async def _no_body() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


def bearer_token(settings: ServeSettings) -> str | None:
    """The token requests must present, from the environment variable the settings name; None = open."""
    return os.environ.get(settings.auth_token_env) or None


def make_app(title: str, description: str, settings: ServeSettings, open_paths: tuple[str, ...] = ()) -> FastAPI:
    """A FastAPI app with the shared error format, body limit and (when a token is set) auth.

    `open_paths` (e.g. /healthz) answer without a token; so do the OpenAPI docs.
    """
    app = FastAPI(title=title, description=description, version="1")
    token = bearer_token(settings)
    docs = ("/docs", "/openapi.json", "/docs/oauth2-redirect", "/redoc")

    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(error_body(exc.message, exc.field), status_code=exc.status)

    @app.exception_handler(StarletteHTTPException)  # also routing's own 404/405, not only FastAPI's
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(error_body(str(exc.detail)), status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            f"{'.'.join(str(p) for p in err['loc'] if p not in ('body', 'query', 'path'))}: {err['msg']}"
            for err in exc.errors()
        ]
        first = exc.errors()[0]["loc"] if exc.errors() else ()
        field = ".".join(str(p) for p in first if p not in ("body", "query", "path")) or None
        return JSONResponse(error_body("; ".join(problems), field), status_code=422)

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return JSONResponse(error_body(f"internal error: {type(exc).__name__}"), status_code=500)

    @app.middleware("http")
    async def _auth(request: Request, call_next: Callable[[Request], Awaitable[Any]]) -> Any:
        path = request.url.path.removeprefix(request.scope.get("root_path", ""))
        if token and path not in open_paths and path not in docs:
            given = request.headers.get("authorization", "")
            scheme, _, value = given.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(), token.encode()):
                return JSONResponse(
                    error_body("missing or wrong bearer token", "Authorization"),
                    status_code=401,
                    headers={"WWW-Authenticate": "Bearer"},
                )
        return await call_next(request)

    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    return app


@dataclass
class RequestMetrics:
    """Request count and latency per route, exported through Ray's metrics agent."""

    app: str
    requests: Any
    latency: Any

    @classmethod
    def create(cls, app: str) -> RequestMetrics:
        from ray.util import metrics

        requests = metrics.Counter(
            "lakehouse_serve_requests", "HTTP requests answered, by status", tag_keys=("app", "route", "status")
        )
        latency = metrics.Histogram(
            "lakehouse_serve_request_seconds",
            "Time to answer a request, in the replica",
            boundaries=LATENCY_BOUNDARIES_S,
            tag_keys=("app", "route"),
        )
        return cls(app, requests, latency)

    def observe(self, route: str, status: int, started: float) -> None:
        self.requests.inc(tags={"app": self.app, "route": route, "status": str(status)})
        self.latency.observe(time.perf_counter() - started, tags={"app": self.app, "route": route})


def counter(name: str, description: str, tag_keys: tuple[str, ...]) -> Any:
    """A Ray metrics counter (exported as `ray_<name>`); call it in a replica, never at import."""
    from ray.util import metrics

    return metrics.Counter(name, description, tag_keys=tag_keys)


def instrument(app: FastAPI, metrics: RequestMetrics) -> None:
    """Count and time every request by its route template (never the raw path: bounded tags)."""

    @app.middleware("http")
    async def _measure(request: Request, call_next: Callable[[Request], Awaitable[Any]]) -> Any:
        started = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        metrics.observe(getattr(route, "path", "unmatched"), response.status_code, started)
        return response
