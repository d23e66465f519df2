"""Embedded SQLite cache of predictions and embeddings, so re-runs never call a model twice and interrupted runs resume."""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

SCHEMA = """
CREATE TABLE IF NOT EXISTS predictions (
    classifier TEXT NOT NULL,
    version TEXT NOT NULL,
    config_hash TEXT NOT NULL,
    image_sha256 TEXT NOT NULL,
    prediction TEXT NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (classifier, version, config_hash, image_sha256)
);
CREATE TABLE IF NOT EXISTS attack_results (
    attack_key TEXT NOT NULL,
    image_sha256 TEXT NOT NULL,
    result TEXT NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (attack_key, image_sha256)
);
CREATE TABLE IF NOT EXISTS answers (
    key TEXT PRIMARY KEY,
    answer TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS embeddings (
    encoder TEXT NOT NULL,
    image_sha256 TEXT NOT NULL,
    vector BLOB NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (encoder, image_sha256)
);
"""


def default_cache_path() -> Path:
    """$IMAGESAFETY_CACHE, else $XDG_CACHE_HOME/imagesafety/cache.sqlite, else ~/.cache/imagesafety/cache.sqlite."""
    if os.environ.get("IMAGESAFETY_CACHE"):
        return Path(os.environ["IMAGESAFETY_CACHE"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "imagesafety" / "cache.sqlite"


class PredictionCache:
    """Predictions keyed by (classifier id, version, config hash, image sha256), stored as JSON.

    Every `put_many` commits at once (WAL journal), so a killed run keeps all finished batches.
    Safe to use from several threads: each thread gets its own connection.
    """

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path is not None else default_cache_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        with self._connect() as conn:
            conn.executescript(SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = sqlite3.connect(self.path, timeout=30)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
            except sqlite3.DatabaseError as exc:
                raise RuntimeError(f"{self.path}: cannot open the prediction cache ({exc}); pass another --cache path") from exc
            self._local.conn = conn
        return conn

    def _json_by_sha(self, select: str, params: tuple, shas: Iterable[str]) -> dict[str, dict[str, Any]]:
        """`select` (ending in `image_sha256 IN`) run for the hashes in chunks of 500; JSON values by hash."""
        shas = list(dict.fromkeys(shas))
        found: dict[str, dict[str, Any]] = {}
        conn = self._connect()
        for start in range(0, len(shas), 500):
            chunk = shas[start : start + 500]
            rows = conn.execute(f"{select} ({','.join('?' * len(chunk))})", (*params, *chunk))
            found.update((sha, json.loads(text)) for sha, text in rows)
        return found

    def get_many(self, key: tuple[str, str, str], shas: Iterable[str]) -> dict[str, dict[str, Any]]:
        """Cached predictions (as dicts) for the given image hashes under one classifier key."""
        return self._json_by_sha("SELECT image_sha256, prediction FROM predictions WHERE classifier=? AND version=? "
                                 "AND config_hash=? AND image_sha256 IN", key, shas)

    def put_many(self, key: tuple[str, str, str], items: Iterable[tuple[str, dict[str, Any]]]) -> None:
        """Store predictions for image hashes under one classifier key, committed immediately."""
        now = time.time()
        rows = [(*key, sha, json.dumps(pred), now) for sha, pred in items]
        conn = self._connect()
        with conn:
            conn.executemany("INSERT OR REPLACE INTO predictions VALUES (?, ?, ?, ?, ?, ?)", rows)

    def get_embedding(self, encoder: str, sha: str) -> np.ndarray | None:
        """A cached float32 embedding of one image under one encoder id, or None."""
        row = self._connect().execute("SELECT vector FROM embeddings WHERE encoder=? AND image_sha256=?", (encoder, sha)).fetchone()
        return np.frombuffer(row[0], dtype=np.float32).copy() if row else None

    def put_embeddings(self, encoder: str, items: Iterable[tuple[str, np.ndarray]]) -> None:
        """Store float32 embeddings for image hashes, committed immediately."""
        now = time.time()
        rows = [(encoder, sha, np.asarray(vec, dtype=np.float32).tobytes(), now) for sha, vec in items]
        conn = self._connect()
        with conn:
            conn.executemany("INSERT OR REPLACE INTO embeddings VALUES (?, ?, ?, ?)", rows)

    def get_attack_results(self, attack_key: str, shas: Iterable[str]) -> dict[str, dict[str, Any]]:
        """Finished attack outcomes per image hash under one (classifier, attack, settings) key."""
        return self._json_by_sha("SELECT image_sha256, result FROM attack_results WHERE attack_key=? AND image_sha256 IN",
                                 (attack_key,), shas)

    def put_attack_results(self, attack_key: str, items: Iterable[tuple[str, dict[str, Any]]]) -> None:
        now = time.time()
        conn = self._connect()
        with conn:
            conn.executemany("INSERT OR REPLACE INTO attack_results VALUES (?, ?, ?, ?)",
                             [(attack_key, sha, json.dumps(result), now) for sha, result in items])

    def get_answer(self, key: str) -> dict[str, Any] | None:
        """A cached model answer (e.g. one VLM response to one prompt about one image)."""
        row = self._connect().execute("SELECT answer FROM answers WHERE key=?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def put_answer(self, key: str, answer: dict[str, Any]) -> None:
        """Store one answer as soon as it arrives, so a crash loses nothing already answered."""
        conn = self._connect()
        with conn:
            conn.execute("INSERT OR REPLACE INTO answers VALUES (?, ?, ?)", (key, json.dumps(answer), time.time()))

    def stats(self) -> list[dict[str, Any]]:
        """Count of cached predictions per (classifier, version, config hash)."""
        rows = self._connect().execute(
            "SELECT classifier, version, config_hash, COUNT(*), MAX(created) FROM predictions "
            "GROUP BY classifier, version, config_hash ORDER BY classifier"
        )
        stats = [
            {"classifier": c, "version": v, "config_hash": h, "predictions": n, "last_written": t}
            for c, v, h, n, t in rows
        ]
        rows = self._connect().execute("SELECT encoder, COUNT(*), MAX(created) FROM embeddings GROUP BY encoder ORDER BY encoder")
        stats += [{"classifier": f"embeddings {e}", "version": "", "config_hash": "", "predictions": n, "last_written": t} for e, n, t in rows]
        return stats

    def clear(self, classifier: str | None = None) -> int:
        """Delete cached predictions and embeddings (of one classifier or encoder id, or all); returns how many."""
        conn = self._connect()
        with conn:
            if classifier is None:
                return conn.execute("DELETE FROM predictions").rowcount + conn.execute("DELETE FROM embeddings").rowcount
            return (conn.execute("DELETE FROM predictions WHERE classifier=?", (classifier,)).rowcount
                    + conn.execute("DELETE FROM embeddings WHERE encoder=?", (classifier,)).rowcount)

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
