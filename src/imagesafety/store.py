"""Embedded SQLite cache of predictions, embeddings, attack outcomes and model answers, so re-runs never call a
model twice and interrupted runs resume.

Predictions are keyed by (classifier id, version, config hash, image sha256); a classifier's config holds the
content identity of its weights, so a retrained model never meets the old model's entries. Each key has a number
(`model_keys`, never reused), and the entries are kept by (number, image sha256) in a table without row ids: a look-up
is one short search of one tree (keyed by the four texts, with a row id beside them, it was two searches over long
keys, half as fast). A cache written before keeps its entries: they are moved over when the file is first opened.
A run also keeps each complete batch's predictions together (`batch_predictions`, by the digest of the batch's image
hashes, `batch_digest`): a re-run of the same batches reads a batch in one search instead of one per image, each
of which cost SQLite about two microseconds, more than reading a small image. Entries are only ever written where
none was (a key holds the weights' identity, so an image's prediction never changes), so a batch kept whole always
agrees with its images' own entries; `clear` deletes both.
The `models` table remembers, per key, the settings, the model identity, when it was last used and by which output
folder (`imagesafety cache info`). A damaged file fails the run with one line (`StoreError`), never as
per-image errors.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterable
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np
import orjson

SCHEMA = """
CREATE TABLE IF NOT EXISTS model_keys (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    classifier TEXT NOT NULL, version TEXT NOT NULL, config_hash TEXT NOT NULL,
    UNIQUE (classifier, version, config_hash)
);
CREATE TABLE IF NOT EXISTS keyed_predictions (
    model INTEGER NOT NULL, image_sha256 TEXT NOT NULL, prediction TEXT NOT NULL, created REAL NOT NULL,
    PRIMARY KEY (model, image_sha256)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS batch_predictions (
    model INTEGER NOT NULL, batch_sha256 TEXT NOT NULL, predictions TEXT NOT NULL, created REAL NOT NULL,
    PRIMARY KEY (model, batch_sha256)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS models (
    classifier TEXT NOT NULL, version TEXT NOT NULL, config_hash TEXT NOT NULL, config TEXT NOT NULL,
    identity TEXT, last_used REAL NOT NULL, last_out TEXT,
    PRIMARY KEY (classifier, version, config_hash)
);
CREATE TABLE IF NOT EXISTS attack_results (
    attack_key TEXT NOT NULL, image_sha256 TEXT NOT NULL, result TEXT NOT NULL, created REAL NOT NULL,
    PRIMARY KEY (attack_key, image_sha256)
);
CREATE TABLE IF NOT EXISTS answers (key TEXT PRIMARY KEY, answer TEXT NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS embeddings (
    encoder TEXT NOT NULL, image_sha256 TEXT NOT NULL, vector BLOB NOT NULL, created REAL NOT NULL,
    PRIMARY KEY (encoder, image_sha256)
);
"""
#: files up to this size are integrity-checked on every open (a fraction of a second); larger ones when an error shows
QUICK_CHECK_MAX_BYTES = 64 * 1024 * 1024
USE_DEFAULT_CACHE = "default"
#: parameters per statement: at most this many, and at most the connection's limit (999 in SQLite before 3.32)
MAX_PARAMETERS = 8192
Key = tuple[str, str, str]


class StoreError(RuntimeError):
    """The cache file cannot be used (damaged, locked, not a database): the run stops with this message."""


def default_cache_path() -> Path:
    """$IMAGESAFETY_CACHE, else $XDG_CACHE_HOME/imagesafety/cache.sqlite, else ~/.cache/imagesafety/cache.sqlite."""
    if os.environ.get("IMAGESAFETY_CACHE"):
        return Path(os.environ["IMAGESAFETY_CACHE"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "imagesafety" / "cache.sqlite"


def open_cache(cache: PredictionCache | str | Path | None) -> PredictionCache | None:
    """The cache to use: an instance, a path, the default location (`"default"`), or None for no cache."""
    if cache is None or isinstance(cache, PredictionCache):
        return cache
    return PredictionCache(None if str(cache) == USE_DEFAULT_CACHE else cache)


class PredictionCache:
    """The cache file; every write commits at once (WAL journal), so a killed run keeps all finished batches.
    Safe to use from several threads: each thread gets its own connection."""

    def __init__(self, path: str | Path | None = None, check: bool = True):
        self.path = Path(path) if path is not None else default_cache_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._model_ids: dict[Key, int] = {}  # never stale: numbers are never deleted
        with self._guard():
            conn = self._connect()
            if check and self.path.is_file() and self.path.stat().st_size <= QUICK_CHECK_MAX_BYTES:
                self.verify(conn)
            with conn:
                conn.executescript(SCHEMA)
            move_old_predictions(conn)

    # -- connections and errors ------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        conn = self._local.__dict__.get("conn")
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
        return conn

    def _guard(self):
        return _StoreErrors(self.path)

    def verify(self, conn: sqlite3.Connection | None = None) -> None:
        """PRAGMA quick_check; a StoreError naming the file when it reports damage."""
        rows = (conn or self._connect()).execute("PRAGMA quick_check").fetchall()
        if rows != [("ok",)]:
            raise StoreError(
                f"{self.path}: the cache file is damaged ({rows[0][0]}); delete it or pass another --cache path "
                "(cached predictions are only a speed-up: nothing else is lost)"
            )

    def _json_by_sha(
        self, value: str, source: str, params: tuple, shas: Iterable[str], column: str = "image_sha256"
    ) -> dict[str, Any]:
        """`value` (an SQL expression whose text is JSON) of each row `source` (`FROM ... WHERE ...`) finds among the
        hashes in `column`, parsed, by hash.

        A chunk of hashes per statement (sorted: SQLite finds them faster in order), and all its hits in its one
        result row, one JSON object `{hash: value, ...}` parsed in one call: sqlite3 gives the interpreter lock away
        around every step, and a statement that returned a row per hit waited for the lock again at every row (with a
        busy thread beside it, up to the switch interval each: a thousand times slower). The hashes are hex digests,
        which need no quoting."""
        shas = sorted(set(shas))
        found: dict[str, Any] = {}
        with self._guard():
            conn = self._connect()
            per = parameters_per_statement(conn) - len(params)
            for start in range(0, len(shas), per):
                chunk = shas[start : start + per]
                (text,) = conn.execute(
                    f"SELECT '{{' || group_concat('\"' || {column} || '\":' || {value}, ',') || '}}' {source} "
                    f"AND {column} IN ({','.join('?' * len(chunk))})",
                    (*params, *chunk),
                ).fetchone()
                if text:
                    found.update(parse_json(text))
        return found

    def _insert(self, table: str, rows: list[tuple]) -> None:
        """Rows into `table` (replacing those with the same key), committed at once; many rows per statement, for the
        same reason as `_json_by_sha` (`executemany` steps, and gives the lock away, once per row)."""
        if not rows:
            return
        width = len(rows[0])
        with self._guard():
            conn = self._connect()
            per = max(1, parameters_per_statement(conn) // width)
            with conn:
                for start in range(0, len(rows), per):
                    part = rows[start : start + per]
                    marks = ",".join([f"({','.join('?' * width)})"] * len(part))
                    conn.execute(f"INSERT OR REPLACE INTO {table} VALUES {marks}", list(chain.from_iterable(part)))

    # -- predictions -----------------------------------------------------------------------------
    def _model_id(self, key: Key, create: bool) -> int | None:
        """The key's number (None if it has none and `create` is false); numbers are never deleted or reused."""
        if key in self._model_ids:
            return self._model_ids[key]
        with self._guard():
            conn = self._connect()
            if create:
                with conn:
                    conn.execute(
                        "INSERT OR IGNORE INTO model_keys (classifier, version, config_hash) VALUES (?, ?, ?)", key
                    )
            row = conn.execute(
                "SELECT id FROM model_keys WHERE classifier=? AND version=? AND config_hash=?", key
            ).fetchone()
        if row is None:
            return None
        self._model_ids[key] = row[0]
        return row[0]

    def get_many(self, key: Key, shas: Iterable[str]) -> dict[str, dict[str, Any]]:
        """Cached predictions (as dicts) for the given image hashes under one classifier key."""
        model = self._model_id(key, create=False)
        if model is None:
            return {}
        return self._json_by_sha("prediction", "FROM keyed_predictions WHERE model=?", (model,), shas)

    def get_batches(self, key: Key, digests: Iterable[str]) -> dict[str, list[dict[str, Any]]]:
        """Whole batches' predictions kept together (`put_batches`) under one classifier key, by the batch's digest
        (`batch_digest`): each a list in the batch's order."""
        model = self._model_id(key, create=False)
        if model is None:
            return {}
        return self._json_by_sha(
            "predictions", "FROM batch_predictions WHERE model=?", (model,), digests, column="batch_sha256"
        )

    def put_batches(self, key: Key, items: Iterable[tuple[str, list[dict[str, Any]]]]) -> None:
        """Keep whole batches' predictions together, by the batch's digest: a re-run of the same batch reads them in
        one look-up instead of one per image (each image's own entry is kept as well, by `put_many`)."""
        rows = list(items)
        if not rows:
            return
        model, now = self._model_id(key, create=True), time.time()
        self._insert("batch_predictions", [(model, digest, json.dumps(forms), now) for digest, forms in rows])

    def put_many(self, key: Key, items: Iterable[tuple[str, dict[str, Any]]]) -> None:
        """Store predictions for image hashes under one classifier key, committed immediately."""
        rows = list(items)
        if not rows:
            return
        model, now = self._model_id(key, create=True), time.time()
        self._insert("keyed_predictions", [(model, sha, json.dumps(p), now) for sha, p in rows])

    def touch_model(
        self, key: Key, config: dict[str, Any], identity: str | None, out: str | Path | None = None
    ) -> None:
        """Remember that this classifier key was used now (and by which output folder)."""
        self._insert(
            "models",
            [
                (
                    *key,
                    json.dumps(config, sort_keys=True, default=str),
                    identity,
                    time.time(),
                    str(Path(out).resolve()) if out is not None else None,
                )
            ],
        )

    # -- embeddings ------------------------------------------------------------------------------
    def get_embeddings(self, encoder: str, shas: Iterable[str]) -> dict[str, np.ndarray]:
        found = self._json_by_sha("'\"' || hex(vector) || '\"'", "FROM embeddings WHERE encoder=?", (encoder,), shas)
        return {sha: np.frombuffer(bytearray.fromhex(text), dtype=np.float32) for sha, text in found.items()}

    def put_embeddings(self, encoder: str, items: Iterable[tuple[str, np.ndarray]]) -> None:
        """Store float32 embeddings for image hashes, committed immediately."""
        now = time.time()
        self._insert(
            "embeddings",
            [(encoder, sha, np.asarray(vec, dtype=np.float32).tobytes(), now) for sha, vec in items],
        )

    # -- attack outcomes and answers -------------------------------------------------------------
    def get_attack_results(self, attack_key: str, shas: Iterable[str]) -> dict[str, dict[str, Any]]:
        """Finished attack outcomes per image hash under one (classifier, attack, settings) key."""
        return self._json_by_sha("result", "FROM attack_results WHERE attack_key=?", (attack_key,), shas)

    def put_attack_results(self, attack_key: str, items: Iterable[tuple[str, dict[str, Any]]]) -> None:
        now = time.time()
        self._insert(
            "attack_results",
            [(attack_key, sha, json.dumps(r), now) for sha, r in items],
        )

    def get_answer(self, key: str) -> dict[str, Any] | None:
        """A cached model answer (e.g. one VLM response to one prompt about one image)."""
        with self._guard():
            row = self._connect().execute("SELECT answer FROM answers WHERE key=?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def put_answer(self, key: str, answer: dict[str, Any]) -> None:
        """Store one answer as soon as it arrives, so a crash loses nothing already answered."""
        self._insert("answers", [(key, json.dumps(answer), time.time())])

    # -- inspection ------------------------------------------------------------------------------
    def stats(self) -> list[dict[str, Any]]:
        """One row per cached classifier key (with its settings, model identity, last use and output folder) and per
        encoder."""
        with self._guard():
            conn = self._connect()
            rows = conn.execute(
                "SELECT k.classifier, k.version, k.config_hash, COUNT(*), MAX(p.created), m.config, m.identity, "
                "m.last_used, m.last_out "
                "FROM keyed_predictions p JOIN model_keys k ON k.id = p.model LEFT JOIN models m ON "
                "m.classifier = k.classifier AND m.version = k.version AND m.config_hash = k.config_hash "
                "GROUP BY p.model ORDER BY k.classifier, MAX(p.created)"
            ).fetchall()
            embedded = conn.execute(
                "SELECT encoder, COUNT(*), MAX(created) FROM embeddings GROUP BY encoder ORDER BY encoder"
            ).fetchall()
        stats = [
            {
                "kind": "predictions",
                "classifier": c,
                "version": v,
                "config_hash": h,
                "entries": n,
                "last_written": t,
                "config": json.loads(cfg) if cfg else None,
                "identity": ident,
                "last_used": used or t,
                "last_out": out,
            }
            for c, v, h, n, t, cfg, ident, used, out in rows
        ]
        stats += [
            {
                "kind": "embeddings",
                "classifier": e,
                "version": "",
                "config_hash": "",
                "entries": n,
                "last_written": t,
                "config": None,
                "identity": e.rpartition("@")[2] if "@" in e else None,
                "last_used": t,
                "last_out": None,
            }
            for e, n, t in embedded
        ]
        return stats

    def clear(self, classifier: str | None = None, older_than_s: float | None = None) -> int:
        """Delete cached predictions and embeddings (of one classifier or encoder id, or all; with `older_than_s`, only
        entries of keys not used for that long); returns how many."""
        cutoff = time.time() - older_than_s if older_than_s is not None else None
        deleted = 0
        with self._guard():
            conn = self._connect()
            with conn:
                where, params = [], []
                if classifier is not None:
                    where.append("model IN (SELECT id FROM model_keys WHERE classifier=?)")
                    params.append(classifier)
                if cutoff is not None:
                    where.append(
                        "COALESCE((SELECT m.last_used FROM models m JOIN model_keys k ON m.classifier = k.classifier "
                        "AND m.version = k.version AND m.config_hash = k.config_hash "
                        "WHERE k.id = {table}.model), created) < ?"
                    )
                    params.append(cutoff)
                clause = f" WHERE {' AND '.join(where)}" if where else ""
                images, batches = (
                    f"DELETE FROM {t}{clause.format(table=t)}" for t in ("keyed_predictions", "batch_predictions")
                )
                deleted += conn.execute(images, params).rowcount
                conn.execute(batches, params)  # the batches kept whole go too (the count is of images)
                emb_where, emb_params = [], []
                if classifier is not None:
                    emb_where.append("(encoder=? OR encoder LIKE ?)")
                    emb_params += [classifier, f"{classifier}@%"]
                if cutoff is not None:
                    emb_where.append("created < ?")
                    emb_params.append(cutoff)
                clause = f" WHERE {' AND '.join(emb_where)}" if emb_where else ""
                deleted += conn.execute(f"DELETE FROM embeddings{clause}", emb_params).rowcount
                conn.execute(
                    "DELETE FROM models WHERE NOT EXISTS (SELECT 1 FROM keyed_predictions p JOIN model_keys k ON "
                    "k.id = p.model WHERE k.classifier = models.classifier AND k.version = models.version AND "
                    "k.config_hash = models.config_hash)"
                )
        return deleted

    def close(self) -> None:
        conn = self._local.__dict__.get("conn")
        if conn is not None:
            conn.close()
            self._local.conn = None


def batch_digest(shas: list[str]) -> str:
    """A batch's identity: the sha256 of its images' hashes in order (hex digests, all one length)."""
    return hashlib.sha256("".join(shas).encode()).hexdigest()


def parse_json(text: str) -> Any:
    """JSON text as Python values, by orjson (four times faster than `json` on a look-up's predictions); text that
    orjson rejects, such as the NaN that `json.dumps` writes for a model's NaN score, by `json`."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def parameters_per_statement(conn: sqlite3.Connection) -> int:
    """How many parameters one statement may bind here: `MAX_PARAMETERS`, or fewer where SQLite allows fewer."""
    return min(MAX_PARAMETERS, conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER))


def move_old_predictions(conn: sqlite3.Connection) -> None:
    """Entries of a cache written before keys had numbers (table `predictions`) moved into `keyed_predictions`, once,
    in one transaction (another process opening the file at the same time waits, then finds nothing to move)."""
    exists = "SELECT 1 FROM sqlite_master WHERE type='table' AND name='predictions'"
    if conn.execute(exists).fetchone() is None:
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        if conn.execute(exists).fetchone() is not None:
            conn.execute(
                "INSERT OR IGNORE INTO model_keys (classifier, version, config_hash) "
                "SELECT DISTINCT classifier, version, config_hash FROM predictions"
            )
            conn.execute(
                "INSERT OR REPLACE INTO keyed_predictions SELECT k.id, p.image_sha256, p.prediction, p.created "
                "FROM predictions p JOIN model_keys k ON k.classifier = p.classifier AND k.version = p.version "
                "AND k.config_hash = p.config_hash"
            )
            conn.execute("DROP TABLE predictions")
        conn.commit()
    except BaseException:
        conn.rollback()
        raise


class _StoreErrors:
    """Turns sqlite3 errors into one StoreError naming the file."""

    def __init__(self, path: Path):
        self.path = path

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        if exc is not None and isinstance(exc, sqlite3.Error) and not isinstance(exc, StoreError):
            raise StoreError(
                f"{self.path}: the prediction cache cannot be used ({exc}); delete it or pass another --cache path "
                "(cached predictions are only a speed-up: nothing else is lost)"
            ) from exc
        return False
