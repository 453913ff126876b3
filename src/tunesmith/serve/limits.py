"""Request limits of the server: API keys, per-key token-bucket rate limit, a concurrency cap with
a bounded queue, and a body-size cap enforced before the body is parsed.

Each limit raises ``ApiError`` with the HTTP status a client should see (401, 429, 503, 413)
and, for 429/503, the seconds to wait (sent as Retry-After).
"""

from __future__ import annotations

import asyncio
import hmac
import math
import os
import threading
import time


class ApiError(Exception):
    """An error answered in OpenAI's shape: {"error": {"message", "type", "code"}}."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error",
                 code: str | None = None, retry_after: float | None = None, param: str | None = None):
        super().__init__(message)
        self.status, self.message, self.kind, self.code = status, message, kind, code
        self.retry_after, self.param = retry_after, param

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.kind, "code": self.code, "param": self.param}}

    def headers(self) -> dict:
        return {"Retry-After": str(max(1, math.ceil(self.retry_after)))} if self.retry_after is not None else {}


def configured_keys(api_keys: list[str], env_name: str | None) -> list[str]:
    """Keys from the config plus the comma-separated ones in the environment variable."""
    keys = list(api_keys)
    if env_name and os.environ.get(env_name):
        keys += [k.strip() for k in os.environ[env_name].split(",") if k.strip()]
    return keys


def check_bearer(header: str | None, keys: list[str]) -> str | None:
    """The key the request authenticated with (None when no keys are configured); else 401."""
    if not keys:
        return None
    scheme, _, token = (header or "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise ApiError(401, "missing API key: send `Authorization: Bearer <key>`", "authentication_error", "missing_api_key")
    for key in keys:  # constant-time comparison against each configured key
        if hmac.compare_digest(token.strip().encode(), key.encode()):
            return key
    raise ApiError(401, "invalid API key", "authentication_error", "invalid_api_key")


class RateLimiter:
    """A token bucket per client: ``per_minute`` requests a minute, bursts up to ``per_minute``."""

    def __init__(self, per_minute: int):
        self.per_minute = per_minute
        self.rate = per_minute / 60.0
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def check(self, client: str) -> None:
        if self.per_minute <= 0:
            return
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(client, (float(self.per_minute), now))
            tokens = min(float(self.per_minute), tokens + (now - last) * self.rate)
            if tokens < 1.0:
                self._buckets[client] = (tokens, now)
                raise ApiError(429, f"rate limit of {self.per_minute} requests per minute exceeded",
                               "rate_limit_error", "rate_limit_exceeded", retry_after=(1.0 - tokens) / self.rate)
            self._buckets[client] = (tokens - 1.0, now)


class ConcurrencyGate:
    """At most ``max_concurrency`` requests run; up to ``max_queue`` wait; the rest get 503."""

    def __init__(self, max_concurrency: int, max_queue: int):
        self.max_concurrency, self.max_queue = max_concurrency, max_queue
        self.running = 0
        self.waiting = 0
        self._sem = asyncio.Semaphore(max_concurrency)

    async def __aenter__(self):
        if self.running >= self.max_concurrency and self.waiting >= self.max_queue:
            raise ApiError(503, f"server busy: {self.running} requests running and {self.waiting} queued "
                           f"(limits {self.max_concurrency}/{self.max_queue}); retry shortly",
                           "server_busy", "queue_full", retry_after=1)
        self.waiting += 1
        try:
            await self._sem.acquire()
        finally:
            self.waiting -= 1
        self.running += 1
        return self

    async def __aexit__(self, *exc):
        self.running -= 1
        self._sem.release()
        return False


class BodySizeLimit:
    """ASGI middleware: 413 for bodies over ``max_bytes`` (by Content-Length, or while streaming in)."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("method") not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            return await self._reject(send)
        seen = 0

        async def limited_receive():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise _TooLarge()
            return message

        try:
            await self.app(scope, limited_receive, send)
        except _TooLarge:
            await self._reject(send)

    async def _reject(self, send):
        import json

        err = ApiError(413, f"request body larger than {self.max_bytes} bytes", code="request_too_large")
        body = json.dumps(err.body()).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


class _TooLarge(Exception):
    pass
