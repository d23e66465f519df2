"""Model identity by content: what every cache key and saved card records about a model.

A local model (a weights file or a folder) is identified by the sha256 of its files, computed once and
remembered by (path, size, mtime), so re-runs pay nothing; a hub model by the commit its library resolved.
A retrained model in the same folder therefore gets a new identity, and nothing cached under the old one
is served for it.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from pathlib import Path

from imagesafety.store import default_cache_path

SKIPPED = {"__pycache__", ".git", ".cache"}
CHUNK = 1 << 20


def digest_memo_path() -> Path:
    """Where digests are remembered: beside the default prediction cache."""
    return default_cache_path().parent / "digests.sqlite"


def _memo() -> sqlite3.Connection | None:
    try:
        path = digest_memo_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, timeout=30)
        conn.execute(
            "CREATE TABLE IF NOT EXISTS digests (path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER, digest TEXT)"
        )
        return conn
    except (OSError, sqlite3.Error):  # a read-only home: digests are computed every time instead
        return None


def file_digest(path: str | Path) -> str:
    """sha256 (hex) of a file's bytes, remembered by (resolved path, size, mtime)."""
    path = Path(path).resolve()
    stat = path.stat()
    conn = _memo()
    try:
        if conn is not None:
            row = conn.execute(
                "SELECT digest FROM digests WHERE path=? AND size=? AND mtime_ns=?",
                (str(path), stat.st_size, stat.st_mtime_ns),
            ).fetchone()
            if row:
                return row[0]
        digest = hashlib.sha256()
        with path.open("rb") as fh:
            while chunk := fh.read(CHUNK):
                digest.update(chunk)
        value = digest.hexdigest()
        if conn is not None:
            with conn:
                conn.execute(
                    "INSERT OR REPLACE INTO digests VALUES (?, ?, ?, ?)",
                    (str(path), stat.st_size, stat.st_mtime_ns, value),
                )
        return value
    finally:
        if conn is not None:
            conn.close()


def tree_files(root: Path) -> list[Path]:
    """The regular files of a model folder, in a stable order (hidden files and caches left out)."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIPPED and not d.startswith("."))
        found += [Path(dirpath) / f for f in sorted(filenames) if not f.startswith(".")]
    return found


def path_digest(path: str | Path) -> str:
    """`sha256:HEX` of a model file, or of a folder's files (their relative paths and contents)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such model file or folder")
    if path.is_file():
        return f"sha256:{file_digest(path)}"
    digest = hashlib.sha256()
    for file in tree_files(path):
        digest.update(file.relative_to(path).as_posix().encode() + b"\0" + file_digest(file).encode() + b"\n")
    return f"sha256:{digest.hexdigest()}"


def hub_identity(repo_id: str, revision: str | None) -> str:
    """`hub:REPO@COMMIT` when the library resolved a commit, else `hub:REPO` (a hub model whose revision is unknown)."""
    return f"hub:{repo_id}@{revision}" if revision else f"hub:{repo_id}"


def is_local(reference: str | Path) -> bool:
    """Whether a model reference names something on this machine (a path that exists)."""
    return Path(str(reference)).expanduser().exists()


def model_identity(reference: str | Path, revision: str | None = None) -> str:
    """The identity of a model given as a local path (its content digest) or a hub id (with the resolved commit)."""
    if is_local(reference):
        return path_digest(Path(str(reference)).expanduser())
    return hub_identity(str(reference), revision)
