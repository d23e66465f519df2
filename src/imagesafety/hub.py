"""Model references: a local path (resolved to an absolute path) or a Hugging Face Hub id, told apart before any
library is asked, so a mistyped folder says so and a hub id with no network fails in one line instead of
retrying for a minute."""

from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
HUB_HOST = "huggingface.co"


class ModelReferenceError(ValueError):
    """A model reference that is neither an existing local path nor a reachable hub id."""


@dataclass(frozen=True)
class ModelRef:
    """Where a model comes from: `local` (an absolute path) or `hub` (a repo id)."""

    kind: str
    location: str

    @property
    def is_local(self) -> bool:
        return self.kind == "local"


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def apply_offline_mode() -> None:
    """Make the Hub libraries honour HF_HUB_OFFLINE as it is now: they read it once, when first imported, so a
    process (or a test) that sets it later would otherwise get a minute of network retries instead of an answer."""
    import importlib

    for module in ("huggingface_hub.constants", "datasets.config"):
        try:
            config = importlib.import_module(module)
        except ImportError:
            continue
        config.HF_HUB_OFFLINE = offline()


def hub_reachable(timeout_s: float = 3.0) -> bool:
    """Whether the Hub answers a TCP connection (a quick check before a library's minute of retries)."""
    endpoint = os.environ.get("HF_ENDPOINT", f"https://{HUB_HOST}").split("://")[-1].split("/")[0]
    host, _, port = endpoint.partition(":")
    try:
        with socket.create_connection((host, int(port or 443)), timeout=timeout_s):
            return True
    except OSError:
        return False


def in_hub_cache(repo_id: str, filename: str = "config.json") -> bool:
    """Whether the local Hub cache already holds the repo (then offline use works)."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    found = try_to_load_from_cache(repo_id, filename)
    return isinstance(found, str)


def resolve(reference: str | Path, what: str = "model", cache_file: str = "config.json") -> ModelRef:
    """A local path (must exist) or a hub id (must be cached, or the Hub reachable and HF_HUB_OFFLINE unset)."""
    text = str(reference).strip()
    path = Path(text).expanduser()
    if path.exists():
        return ModelRef("local", str(path.resolve()))
    looks_like_path = text.startswith((".", "/", "~")) or text.count("/") > 1 or not HUB_ID.match(text)
    if looks_like_path:
        raise ModelReferenceError(
            f"{what} {text!r}: no such file or folder (and not a Hugging Face Hub id such as ORG/NAME)"
        )
    if in_hub_cache(text, cache_file):
        return ModelRef("hub", text)
    require_hub(
        f"{what} {text!r} (no local folder of that name; as a Hugging Face Hub id)",
        "download it on a machine with internet and pass its folder",
    )
    return ModelRef("hub", text)


def require_hub(subject: str, hint: str) -> None:
    """Fail at once, in one line, when `subject` must come from the Hub and cannot: HF_HUB_OFFLINE is set, or the Hub
    does not answer (instead of a library's minute of retries)."""
    if offline():
        raise ModelReferenceError(f"{subject} is not in the local cache while HF_HUB_OFFLINE is set: {hint}")
    if not hub_reachable():
        raise ModelReferenceError(
            f"{subject} is not in the local cache and needs {HUB_HOST}, which cannot be reached from here: {hint}"
        )


def download(repo_id: str, filename: str, what: str = "weights") -> str:
    """A file of a hub repo (from the local cache when there), with the same fail-fast checks as `resolve`."""
    from huggingface_hub import hf_hub_download

    if not in_hub_cache(repo_id, filename):
        require_hub(f"{what}: {repo_id}/{filename}", "download it elsewhere and pass --option weights=PATH")
    try:
        return hf_hub_download(repo_id, filename)
    except Exception as exc:  # gated repos, missing files, HTTP errors: one line
        raise ModelReferenceError(
            f"{what}: cannot download {repo_id}/{filename} ({type(exc).__name__}: {exc}); "
            "pass --option weights=PATH for a local copy"
        ) from None


def cached_revision(repo_id: str, filename: str = "config.json") -> str | None:
    """The commit a cached hub repo resolved to (its snapshot folder's name), or None when it is not cached."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    found = try_to_load_from_cache(repo_id, filename)
    if not isinstance(found, str):
        return None
    parent = Path(found).parent
    while parent.parent.name != "snapshots" and parent != parent.parent:
        parent = parent.parent
    return parent.name if parent.parent.name == "snapshots" else None


def identity_of(ref: ModelRef, filename: str = "config.json") -> str:
    """The content identity of a resolved model: its files' digest (local) or the hub commit it resolved to."""
    from imagesafety.identity import hub_identity, path_digest

    return (
        path_digest(ref.location)
        if ref.is_local
        else hub_identity(ref.location, cached_revision(ref.location, filename))
    )


def snapshot(repo_id: str, what: str, repo_type: str = "dataset", allow_patterns: list[str] | None = None) -> str:
    """A local folder holding (the wanted files of) a hub repo: the cached snapshot when there, else downloaded once."""
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(repo_id, repo_type=repo_type, allow_patterns=allow_patterns, local_files_only=True)
    except Exception:
        pass
    require_hub(f"{what}: {repo_id}", "download it elsewhere and pass its folder")
    try:
        return snapshot_download(repo_id, repo_type=repo_type, allow_patterns=allow_patterns)
    except Exception as exc:
        raise ModelReferenceError(
            f"{what}: cannot download {repo_id} ({type(exc).__name__}: {exc}); pass a local copy's folder"
        ) from None
