"""The audit log: one row per decision, in SQLite by default or any SQLAlchemy URL (PostgreSQL).

Rows are queued by request handlers and written in batches by one background thread, so a slow
database never blocks a request; `close` drains the queue (graceful shutdown loses nothing).
"""

from __future__ import annotations

import json
import queue
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import JSON, Boolean, Column, Float, Integer, LargeBinary, MetaData, String, Table, create_engine, insert, select

metadata = MetaData()
audit_table = Table(
    "audit_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("request_id", String(64), index=True, nullable=False),
    Column("key_id", String(128)),
    Column("endpoint", String(64)),
    Column("image_sha256", String(64), index=True),
    Column("model", String(256)),
    Column("model_version", String(64)),
    Column("scores", JSON),
    Column("unsafe_score", Float),
    Column("flagged", Boolean),
    Column("error", String(1024)),
    Column("latency_ms", Float),
    Column("created", Float, nullable=False),
    Column("image", LargeBinary, nullable=True),
)


@dataclass
class AuditRecord:
    request_id: str
    key_id: str | None
    endpoint: str
    image_sha256: str | None
    model: str
    model_version: str
    scores: dict[str, float] | None
    unsafe_score: float | None
    flagged: bool | None
    error: str | None
    latency_ms: float
    created: float
    image: bytes | None = None


class AuditLog:
    def __init__(self, url: str, batch_size: int = 256):
        self.engine = create_engine(url, future=True, pool_pre_ping=True)
        metadata.create_all(self.engine)
        self.queue: queue.Queue[AuditRecord | None] = queue.Queue()
        self.batch_size = batch_size
        self.written = 0
        self.thread = threading.Thread(target=self._writer, name="audit-writer", daemon=True)
        self.thread.start()

    def record(self, rec: AuditRecord) -> None:
        self.queue.put(rec)

    def _writer(self) -> None:
        stop = False
        while not stop:
            first = self.queue.get()
            batch = [] if first is None else [first]
            stop = first is None
            while not stop and len(batch) < self.batch_size:
                try:
                    item = self.queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                else:
                    batch.append(item)
            if batch:
                self._write(batch)

    def _write(self, batch: list[AuditRecord]) -> None:
        rows = [asdict(r) for r in batch]
        for attempt in range(5):
            try:
                with self.engine.begin() as conn:
                    conn.execute(insert(audit_table), rows)
                self.written += len(rows)
                return
            except Exception:  # database briefly unavailable: back off, keep the rows
                time.sleep(0.2 * 2**attempt)
        with open("imagesafety-audit-failed.jsonl", "a", encoding="utf-8") as fh:  # last resort: never drop a decision
            for row in rows:
                fh.write(json.dumps({k: v for k, v in row.items() if k != "image"}) + "\n")

    def close(self) -> None:
        """Write everything queued, then stop the writer."""
        self.queue.put(None)
        self.thread.join()
        self.engine.dispose()

    def rows(self, limit: int = 100_000) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(select(audit_table).order_by(audit_table.c.id).limit(limit))]
