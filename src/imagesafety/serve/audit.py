"""The audit log: one row per decision, in SQLite by default or any SQLAlchemy URL (PostgreSQL).

A request's rows are committed before its answer is sent: handlers hand them to one writer thread, which commits
whatever several requests handed in as one transaction (group commit; SQLite in WAL mode with synchronous commits)
and only then lets each request answer. If the rows cannot be written the request fails and no decision goes out,
so a decision a client received is always in the log, even if the process is killed right after.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Float,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    create_engine,
    event,
    insert,
    select,
)

from imagesafety.queues import take_waiting

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
    Column(
        "detail", JSON, nullable=True
    ),  # what decided besides the model (a hash-bank match: entry, label, source, distance)
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
    detail: dict | None = None


class AuditWriteError(RuntimeError):
    """The audit rows could not be committed: the decision must not be returned."""


def _sqlite_durable(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


class AuditLog:
    def __init__(self, url: str, batch_size: int = 256, retries: int = 5):
        self.url = url
        self.engine = create_engine(url, future=True, pool_pre_ping=True)
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_durable)
        metadata.create_all(self.engine)
        self._add_missing_columns()
        self.queue: queue.Queue[tuple[list[AuditRecord], Callable[[BaseException | None], None]] | None] = queue.Queue()
        self.batch_size, self.retries = batch_size, retries
        self.written = 0
        self.thread = threading.Thread(target=self._writer, name="audit-writer", daemon=True)
        self.thread.start()

    def _add_missing_columns(self) -> None:
        """Logs written by an earlier version lack later columns: add them (nullable), so old logs keep working."""
        from sqlalchemy import inspect, text

        present = {c["name"] for c in inspect(self.engine).get_columns("audit_log")}
        with self.engine.begin() as conn:
            for column in audit_table.columns:
                if column.name not in present:
                    conn.execute(
                        text(
                            f"ALTER TABLE audit_log ADD COLUMN {column.name} {column.type.compile(self.engine.dialect)}"
                        )
                    )

    async def commit(self, records: list[AuditRecord]) -> None:
        """Return once `records` are committed; AuditWriteError if they cannot be."""
        loop = asyncio.get_running_loop()
        done = loop.create_future()

        def settle(error: BaseException | None) -> None:
            loop.call_soon_threadsafe(
                lambda: done.done() or (done.set_exception(error) if error else done.set_result(None))
            )

        self.queue.put((records, settle))
        await asyncio.shield(done)

    def commit_now(self, records: list[AuditRecord]) -> None:
        """The same from synchronous code (tests, tools): blocks until committed."""
        finished = threading.Event()
        failure: list[BaseException] = []
        self.queue.put((records, lambda error: (failure.append(error) if error else None, finished.set())))
        finished.wait()
        if failure:
            raise failure[0]

    def _writer(self) -> None:
        stop = False
        while not stop:
            entries, stop = take_waiting(self.queue, lambda entry: len(entry[0]), self.batch_size)
            if entries:
                error = self._write([r for records, _ in entries for r in records])
                for _, settle in entries:
                    settle(error)

    def _write(self, batch: list[AuditRecord]) -> BaseException | None:
        rows = [asdict(r) for r in batch]
        last: BaseException | None = None
        for attempt in range(self.retries):
            try:
                with self.engine.begin() as conn:
                    conn.execute(insert(audit_table), rows)
                self.written += len(rows)
                return None
            except Exception as exc:  # database briefly unavailable: back off and retry, then give up on these requests
                last = exc
                time.sleep(0.1 * 2**attempt)
        return AuditWriteError(f"the audit log could not be written ({type(last).__name__}: {last})")

    def close(self) -> None:
        """Commit everything handed in, then stop the writer."""
        self.queue.put(None)
        self.thread.join()
        self.engine.dispose()

    def rows(self, limit: int = 100_000) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(select(audit_table).order_by(audit_table.c.id).limit(limit))]
