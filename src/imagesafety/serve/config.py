"""Operator settings of the moderation service, checked before the server starts: authentication cannot switch
itself off (an empty key set, an empty key or a malformed keys file is refused; `auth=False` is explicit)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from imagesafety.images import MAX_PIXELS
from imagesafety.media import FramePolicy

TEXT_PARTS = ("refuse", "ignore")

#: characters a key may not consist of alone, or begin or end with (HTTP strips only ASCII spaces and tabs)
ASCII_SPACE = " \t"


def default_audit_url() -> str:
    """SQLite in the user's data folder ($XDG_DATA_HOME/imagesafety or ~/.local/share/imagesafety), never the working
    directory."""
    base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "imagesafety"
    base.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{base / 'audit.sqlite'}"


def check_key(key: str, where: str) -> str:
    """A usable API key: non-empty, no surrounding or only-whitespace content, printable ASCII."""
    if not key or not key.strip(ASCII_SPACE):
        raise ValueError(f"{where}: empty API key")
    if key != key.strip(ASCII_SPACE):
        raise ValueError(f"{where}: API key has leading or trailing spaces")
    if not all(33 <= ord(ch) <= 126 for ch in key):
        raise ValueError(f"{where}: API keys must be printable ASCII without spaces")
    return key


def read_keys_file(path: str | Path) -> dict[str, str]:
    """`key_id:secret` per line (blank lines and # comments ignored); a bare secret gets id key-N. A file without
    any key, a line without a secret, or a missing file is an error naming the file and line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: cannot read the keys file ({exc})") from None
    keys: dict[str, str] = {}
    for n, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip(ASCII_SPACE)
        if not line or line.startswith("#"):
            continue
        key_id, sep, secret = line.partition(":")
        if not sep:
            key_id, secret = f"key-{n}", key_id
        key_id, secret = key_id.strip(ASCII_SPACE), secret.strip(ASCII_SPACE)
        if not key_id:
            raise ValueError(f"{path}:{n}: empty key id")
        check_key(secret, f"{path}:{n}")
        if key_id in keys:
            raise ValueError(f"{path}:{n}: key id {key_id!r} appears twice")
        keys[key_id] = secret
    if not keys:
        raise ValueError(
            f"{path}: no API keys in the file (only blank lines or comments); refusing to serve without authentication "
            "(pass --no-auth to serve without keys on purpose)"
        )
    return keys


@dataclass
class ServeConfig:
    """Everything `imagesafety serve` can be told; defaults are safe for a public endpoint."""

    classifiers: list[str] = field(default_factory=lambda: ["nudenet"])
    api_keys: dict[str, str] = field(default_factory=dict)  # key id -> secret
    auth: bool = True  # False only on purpose (--no-auth): then no keys are checked
    thresholds: dict[str, float] = field(default_factory=dict)  # category key -> threshold (operator override)
    max_request_bytes: int = 20 * 1024 * 1024
    max_images_per_request: int = 16
    max_pixels: int = MAX_PIXELS  # one image
    max_request_pixels: int = 64_000_000  # all images of one request together
    max_side: int = 16384  # longest side of one image
    max_aspect_ratio: float = 64.0
    rate_limit_per_minute: int = 0  # requests per API key; 0: unlimited
    images_per_minute: int = 0  # images per API key; 0: unlimited
    pixels_per_minute: int = 0  # pixels per API key, summed over images; 0: unlimited
    failed_auth_per_minute: int = 30  # per client address
    request_timeout_s: float = 30.0
    batch_window_ms: float = 5.0
    max_batch_size: int = 16
    allow_url_hosts: list[str] = field(default_factory=list)  # empty: only data URLs
    url_timeout_s: float = 10.0
    audit_url: str | None = None  # None: SQLite in the user's data folder (default_audit_url)
    store_images: bool = False
    classifier_options: dict[str, dict] = field(default_factory=dict)
    frames: FramePolicy = field(
        default_factory=lambda: FramePolicy(early_exit=True)
    )  # every frame; videos stop at the first flag
    text_parts: str = (
        "refuse"  # text parts of a multi-modal input: refused (400), or "ignore" (only the images scored, said so)
    )
    max_images_per_input: int = 16  # images in one multi-modal input (1: as OpenAI, code too_many_images)
    max_explain_calls: int = 400  # model calls explanations may cost per request (explain= on /v1/classify)
    hash_bank: str | None = (
        None  # folder of a hash bank matched before any model runs (a match answers at once, never stored)
    )

    def check(self) -> None:
        """Refuse settings that would serve without meaning to: authentication on but no keys, or an empty key."""
        if self.auth:
            if not self.api_keys:
                raise ValueError(
                    "no API keys: pass --api-key KEY or --keys-file FILE (or --no-auth to serve without authentication "
                    "on purpose)"
                )
            for key_id, secret in self.api_keys.items():
                check_key(secret, f"API key {key_id!r}")
        if self.text_parts not in TEXT_PARTS:
            raise ValueError(f"--text-parts must be one of {', '.join(TEXT_PARTS)}, not {self.text_parts!r}")
        for name in (
            "max_request_bytes",
            "max_images_per_request",
            "max_pixels",
            "max_request_pixels",
            "max_batch_size",
            "max_side",
            "max_images_per_input",
            "max_explain_calls",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.request_timeout_s <= 0:
            raise ValueError("--timeout must be above 0")
        if self.max_aspect_ratio < 1:
            raise ValueError("max_aspect_ratio must be at least 1")
