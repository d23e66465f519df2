"""Operator settings of the moderation service."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from imagesafety.images import MAX_PIXELS


@dataclass
class ServeConfig:
    """Everything `imagesafety serve` can be told; defaults are safe for a public endpoint."""

    classifiers: list[str] = field(default_factory=lambda: ["nudenet"])
    api_keys: dict[str, str] = field(default_factory=dict)  # key id -> secret; empty: no auth
    thresholds: dict[str, float] = field(default_factory=dict)  # category key -> threshold (operator override)
    max_request_bytes: int = 20 * 1024 * 1024
    max_images_per_request: int = 16
    max_pixels: int = MAX_PIXELS
    rate_limit_per_minute: int = 0  # per API key; 0: unlimited
    request_timeout_s: float = 30.0
    batch_window_ms: float = 5.0
    max_batch_size: int = 16
    allow_url_hosts: list[str] = field(default_factory=list)  # empty: only data URLs
    url_timeout_s: float = 10.0
    audit_url: str = "sqlite:///imagesafety-audit.sqlite"
    store_images: bool = False
    classifier_options: dict[str, dict] = field(default_factory=dict)

    @staticmethod
    def read_keys_file(path: str | Path) -> dict[str, str]:
        """`key_id:secret` per line (blank lines and # comments ignored); a bare secret gets id key-N."""
        keys = {}
        for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            key_id, sep, secret = line.partition(":")
            if not sep:
                key_id, secret = f"key-{n}", key_id
            if not secret.strip():
                raise ValueError(f"{path}:{n}: empty API key")
            keys[key_id.strip()] = secret.strip()
        return keys
