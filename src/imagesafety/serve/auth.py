"""API keys (constant-time comparison) and per-key rate limits (token bucket)."""

from __future__ import annotations

import hmac
import threading
import time

from imagesafety.serve.errors import APIError


class KeyChecker:
    def __init__(self, keys: dict[str, str]):
        self.keys = {k: v.encode() for k, v in keys.items()}

    def identify(self, authorization: str | None) -> str | None:
        """The key id for a `Bearer SECRET` header; None when the server has no keys; APIError 401 otherwise."""
        if not self.keys:
            return None
        if not authorization or not authorization.lower().startswith("bearer "):
            raise APIError(401, "missing API key: send 'Authorization: Bearer YOUR_KEY'", "invalid_request_error", "missing_api_key")
        given = authorization[7:].strip().encode()
        found = None
        for key_id, secret in self.keys.items():  # check every key, so timing does not reveal which matched
            if hmac.compare_digest(given, secret):
                found = key_id
        if found is None:
            raise APIError(401, "incorrect API key provided", "invalid_request_error", "invalid_api_key")
        return found


class RateLimiter:
    """`per_minute` requests per key, refilled continuously; 0 disables it."""

    def __init__(self, per_minute: int):
        self.rate = per_minute / 60.0
        self.capacity = float(per_minute)
        self.buckets: dict[str, tuple[float, float]] = {}
        self.lock = threading.Lock()

    def check(self, key: str | None) -> None:
        if self.rate <= 0:
            return
        now = time.monotonic()
        with self.lock:
            tokens, last = self.buckets.get(key or "", (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - last) * self.rate)
            if tokens < 1:
                self.buckets[key or ""] = (tokens, now)
                raise APIError(429, f"rate limit of {int(self.capacity)} requests per minute reached; retry later",
                               "rate_limit_error", "rate_limit_exceeded")
            self.buckets[key or ""] = (tokens - 1, now)
