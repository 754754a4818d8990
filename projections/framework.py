"""How projections are fed: batches of envelopes, applied with their checkpoint in one transaction.

A projection sees each event at most once: the store skips events at or below the projection's checkpoint
for their source and partition, and events whose stream version it has already applied (a duplicate
delivery from the log). Rows, stream versions and checkpoints are written in the same transaction, so a
crash at any point loses and doubles nothing. The same `ProjectionStore.process` is called by the embedded
runner (source `log`, the notification id as position) and by Kafka consumers (topic, partition, offset).
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlmodel import SQLModel

from projections.tables import Checkpoint, StreamVersion
from schemas.catalogue import upcast
from schemas.envelope import EventEnvelope

_IN_CHUNK = 500


def utc(value: datetime | None) -> datetime | None:
    """SQLite hands datetimes back without a zone; everything here is stored in UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def table_of(model: type[SQLModel]) -> sa.Table:
    return model.__table__  # type: ignore[attr-defined]


class Projection(ABC):
    """A read model: the tables it owns and how a batch of events changes them."""

    name: str
    tables: tuple[type[SQLModel], ...]
    event_types: frozenset[str]

    @abstractmethod
    def apply(self, events: Sequence[EventEnvelope], conn: Connection) -> None:
        """Apply events (already upcast, deduplicated and in log order) inside the caller's transaction."""


class RowCache:
    """The rows of one table a batch touches: loaded in one query, changed in memory, written in one upsert.

    Applying events to dicts in memory keeps per-row order right (an insert, then updates, then a delete and
    a re-insert all land as they should) while the database sees two statements per batch.
    """

    def __init__(self, model: type[SQLModel], key: str) -> None:
        self.table = table_of(model)
        self.key = key
        self.rows: dict[Any, dict[str, Any]] = {}
        self.dirty: set[Any] = set()
        self._defaults = {c.name: _default(c) for c in self.table.columns}

    def load(self, conn: Connection, keys: Iterable[Any]) -> None:
        wanted = [k for k in set(keys) if k not in self.rows]
        column = self.table.c[self.key]
        for start in range(0, len(wanted), _IN_CHUNK):
            chunk = wanted[start : start + _IN_CHUNK]
            for row in conn.execute(sa.select(self.table).where(column.in_(chunk))).mappings():
                self.rows[row[self.key]] = dict(row)

    def get(self, key: Any) -> dict[str, Any] | None:
        return self.rows.get(key)

    def create(self, key: Any, **values: Any) -> dict[str, Any]:
        row = {**self._defaults, self.key: key, **values}
        self.rows[key] = row
        self.dirty.add(key)
        return row

    def update(self, key: Any, **values: Any) -> dict[str, Any] | None:
        row = self.rows.get(key)
        if row is not None:
            row.update(values)
            self.dirty.add(key)
        return row

    def flush(self, conn: Connection) -> None:
        upsert(conn, self.table, [self.rows[k] for k in self.dirty], [self.key])
        self.dirty.clear()


def _default(column: sa.Column[Any]) -> Any:
    default = column.default
    if default is None:
        return None
    arg = getattr(default, "arg", None)
    if callable(arg):
        return arg(None)
    return arg


def upsert(conn: Connection, table: sa.Table, rows: list[dict[str, Any]], keys: list[str]) -> None:
    if not rows:
        return
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        pg = pg_insert(table)
        stmt: Any = pg.on_conflict_do_update(
            index_elements=keys, set_={c.name: pg.excluded[c.name] for c in table.columns if c.name not in keys}
        )
    else:
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        lite = sqlite_insert(table)
        stmt = lite.on_conflict_do_update(
            index_elements=keys, set_={c.name: lite.excluded[c.name] for c in table.columns if c.name not in keys}
        )
    conn.execute(stmt, rows)


def insert_ignoring_duplicates(conn: Connection, table: sa.Table, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        conn.execute(pg_insert(table).on_conflict_do_nothing(), rows)
    else:
        conn.execute(table.insert().prefix_with("OR IGNORE"), rows)


@dataclass(frozen=True)
class Position:
    source: str
    partition: int
    position: int


class ProjectionStore:
    """The projections' database (SQLite by default, PostgreSQL by URL)."""

    def __init__(self, url: str, projections: Sequence[Projection]) -> None:
        self.url = url
        self.engine: Engine = _engine(url)
        self.projections = {p.name: p for p in projections}
        self.create()

    def only(self, names: Iterable[str]) -> ProjectionStore:
        """A view of this store that feeds only the named projections (for a rebuild of some of them)."""
        view = copy.copy(self)
        view.projections = {name: self.projections[name] for name in names}
        return view

    def create(self) -> None:
        tables = [table_of(Checkpoint), table_of(StreamVersion)]
        for projection in self.projections.values():
            tables += [table_of(t) for t in projection.tables]
        SQLModel.metadata.create_all(self.engine, tables=tables)

    def checkpoint(self, consumer: str, source: str, partition: int = 0) -> int | None:
        with self.engine.connect() as conn:
            return read_checkpoint(conn, consumer, source, partition)

    def process(self, envelopes: Sequence[EventEnvelope], source: str, partition: int = 0) -> int:
        """Apply a batch to every projection, with checkpoints, in one transaction; returns events applied."""
        if not envelopes:
            return 0
        upcasted = [upcast(e) for e in envelopes]
        applied = 0
        with self.engine.begin() as conn:
            for projection in self.projections.values():
                applied += self._apply(conn, projection, upcasted, source, partition)
        return applied

    def _apply(
        self, conn: Connection, projection: Projection, envelopes: Sequence[EventEnvelope], source: str, partition: int
    ) -> int:
        after = read_checkpoint(conn, projection.name, source, partition)
        fresh = [e for e in envelopes if after is None or (e.position is not None and e.position > after)]
        relevant = [e for e in fresh if e.event_type in projection.event_types]
        versions = _stream_versions(conn, projection.name, {e.stream_id for e in relevant})
        todo: list[EventEnvelope] = []
        for event in relevant:
            if event.stream_version > versions.get(event.stream_id, 0):
                versions[event.stream_id] = event.stream_version
                todo.append(event)
        if todo:
            projection.apply(todo, conn)
            touched = {e.stream_id for e in todo}
            upsert(
                conn,
                table_of(StreamVersion),
                [{"projection": projection.name, "stream_id": s, "version": versions[s]} for s in touched],
                ["projection", "stream_id"],
            )
        last = envelopes[-1].position
        if last is not None and (after is None or last > after):
            write_checkpoint(conn, projection.name, source, partition, last)
        return len(todo)

    def reset(self, names: Iterable[str]) -> None:
        """Drop a projection's tables and checkpoints, and create them empty, for a rebuild from the log."""
        for name in names:
            projection = self.projections[name]
            tables = [table_of(t) for t in projection.tables]
            with self.engine.begin() as conn:
                for table in reversed(tables):
                    table.drop(conn, checkfirst=True)
                conn.execute(sa.delete(table_of(Checkpoint)).where(table_of(Checkpoint).c.consumer == name))
                conn.execute(sa.delete(table_of(StreamVersion)).where(table_of(StreamVersion).c.projection == name))
            SQLModel.metadata.create_all(self.engine, tables=tables)


def read_checkpoint(conn: Connection, consumer: str, source: str, partition: int) -> int | None:
    table = table_of(Checkpoint)
    return conn.execute(
        sa.select(table.c.position).where(
            table.c.consumer == consumer, table.c.source == source, table.c.partition == partition
        )
    ).scalar_one_or_none()


def write_checkpoint(conn: Connection, consumer: str, source: str, partition: int, position: int) -> None:
    upsert(
        conn,
        table_of(Checkpoint),
        [{"consumer": consumer, "source": source, "partition": partition, "position": position}],
        ["consumer", "source", "partition"],
    )


def _stream_versions(conn: Connection, projection: str, stream_ids: set[str]) -> dict[str, int]:
    table = table_of(StreamVersion)
    found: dict[str, int] = {}
    ids = list(stream_ids)
    for start in range(0, len(ids), _IN_CHUNK):
        rows = conn.execute(
            sa.select(table.c.stream_id, table.c.version).where(
                table.c.projection == projection, table.c.stream_id.in_(ids[start : start + _IN_CHUNK])
            )
        )
        found.update({stream_id: version for stream_id, version in rows})
    return found


def _engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"timeout": 30})

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection: Any, _: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return sa.create_engine(url, pool_pre_ping=True)
