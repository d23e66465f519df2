"""Who may call the service, checked before a byte of the body is read: API keys compared in constant time exactly as
sent (only the ASCII spaces HTTP allows around a header value are removed), failed attempts limited per client address,
and per-key budgets of requests, images and pixels (token buckets refilled continuously)."""

from __future__ import annotations

import hmac
import threading
import time

from fastapi.responses import JSONResponse

from imagesafety.serve.errors import APIError, error_body

GATED_PREFIX = "/v1/"


class KeyChecker:
    def __init__(self, keys: dict[str, str], required: bool = True):
        self.keys = {k: v.encode() for k, v in keys.items()}
        self.required = required

    def identify(self, authorization: str | None) -> str | None:
        """The key id for `Bearer SECRET`; None when the server runs without authentication; APIError 401 otherwise."""
        if not self.required:
            return None
        if not authorization or authorization[:7].lower() != "bearer ":
            raise APIError(
                401,
                "missing API key: send 'Authorization: Bearer YOUR_KEY'",
                "invalid_request_error",
                "missing_api_key",
            )
        given = authorization[7:].strip(" \t").encode("utf-8", "surrogateescape")
        found = None
        for key_id, secret in self.keys.items():  # check every key, so timing does not reveal which matched
            if hmac.compare_digest(given, secret):
                found = key_id
        if found is None or not given:
            raise APIError(401, "incorrect API key provided", "invalid_request_error", "invalid_api_key")
        return found


class TokenBucket:
    """`per_minute` units per key, refilled continuously; 0 disables it. `what` names the unit in the 429 message."""

    def __init__(self, per_minute: float, what: str = "requests"):
        self.rate = per_minute / 60.0
        self.capacity = float(per_minute)
        self.what = what
        self.buckets: dict[str, tuple[float, float]] = {}
        self.lock = threading.Lock()

    def _level(self, key: str, now: float) -> float:
        tokens, last = self.buckets.get(key, (self.capacity, now))
        return min(self.capacity, tokens + (now - last) * self.rate)

    def exhausted(self, key: str | None) -> bool:
        return self.rate > 0 and self._level(key or "", time.monotonic()) < 1

    def take(self, key: str | None, amount: float = 1.0) -> None:
        """Spend `amount` units of `key`'s budget or raise 429 (a request larger than the whole budget is refused
        too)."""
        if self.rate <= 0:
            return
        now = time.monotonic()
        with self.lock:
            tokens = self._level(key or "", now)
            if tokens < amount:
                self.buckets[key or ""] = (tokens, now)
                raise APIError(
                    429,
                    f"rate limit of {self.capacity:g} {self.what} per minute reached; retry later",
                    "rate_limit_error",
                    "rate_limit_exceeded",
                )
            self.buckets[key or ""] = (tokens - amount, now)


class AuthGate:
    """ASGI middleware in front of /v1/: refuses clients over their failed-attempt budget, checks the key, charges the
    key's request budget, and records the key id in the request's state, all before the body is read."""

    def __init__(self, app, keys: KeyChecker, requests: TokenBucket, failed_per_minute: int):
        self.app, self.keys, self.requests = app, keys, requests
        self.failures = TokenBucket(failed_per_minute, "failed authentication attempts")

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not scope["path"].startswith(GATED_PREFIX):
            return await self.app(scope, receive, send)
        client = (scope.get("client") or ("unknown", 0))[0]
        headers = dict(scope.get("headers") or [])
        raw = headers.get(b"authorization")
        try:
            if self.keys.required and self.failures.exhausted(client):
                raise APIError(
                    429,
                    "too many failed authentication attempts from this address; retry later",
                    "rate_limit_error",
                    "too_many_failed_attempts",
                )
            try:
                key_id = self.keys.identify(raw.decode("latin-1") if raw is not None else None)
            except APIError:
                self._count_failure(client)
                raise
            self.requests.take(key_id)
        except APIError as exc:
            # the connection closes with the refusal, so a refused client's body is never read
            response = JSONResponse(
                error_body(exc.message, exc.type, exc.code, exc.param), exc.status, headers={"Connection": "close"}
            )
            return await response(scope, receive, send)
        scope.setdefault("state", {})["key_id"] = key_id
        return await self.app(scope, receive, send)

    def _count_failure(self, client: str) -> None:
        try:
            self.failures.take(client)
        except APIError:
            pass  # already over: the next attempt is refused before its key is looked at
