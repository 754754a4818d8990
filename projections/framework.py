"""How projections are fed: batches of envelopes, applied with each projection's checkpoint in one transaction.

A projection sees each event at most once: the store skips events at or below the projection's checkpoint
for their source and partition, and events whose stream version it has already applied (a duplicate
delivery from the log). A projection's rows, stream versions and checkpoints are written in the same
transaction, so a crash at any point loses and doubles nothing. The feed commits first, on its own (`ahead`):
it shows a takedown without waiting for the audit trail to be written. The same
`ProjectionStore.process` is called by the embedded runner (source `log`, the notification id as position)
and by Kafka consumers (topic, partition, offset).
"""

from __future__ import annotations

import copy
import sqlite3
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Dialect, Engine
from sqlmodel import SQLModel

from projections.bulk import ColumnUpdater, RowReader, TableWriter
from projections.tables import Checkpoint, StreamVersion
from schemas.catalogue import upcast
from schemas.envelope import EventEnvelope

Statement = TypeVar("Statement", RowReader, TableWriter, ColumnUpdater)


def table_of(model: type[SQLModel]) -> sa.Table:
    return model.__table__  # type: ignore[attr-defined]


class Projection(ABC):
    """A read model: the tables it owns and how a batch of events changes them."""

    name: str
    tables: tuple[type[SQLModel], ...]
    event_types: frozenset[str]
    ahead: bool = False
    """Committed on its own, before the others, from every batch: a read model that users see, where a takedown
    must show without waiting for the audit trail to be written."""

    @abstractmethod
    def apply(self, events: Sequence[EventEnvelope], conn: Connection) -> None:
        """Apply events (already upcast, deduplicated and in log order) inside the caller's transaction."""


class RowCache:
    """The rows of one table a batch touches: loaded in one query, changed in memory, written in one upsert.

    Applying events to dicts in memory keeps per-row order right (an insert, then updates, then a delete and
    a re-insert all land as they should) while the database sees two statements per batch.

    `reads` names the only columns the projection reads from rows it did not create in the batch. With it,
    rows that already exist are loaded with just those columns and written back with just the columns the
    batch changed (an UPDATE); rows the batch creates are still written whole. That spares decoding and
    re-encoding every other column (large JSON documents) when a batch only moves existing rows along, as a
    revocation cascade's takedowns do.
    """

    def __init__(self, model: type[SQLModel], key: str, *, reads: Sequence[str] | None = None) -> None:
        self.table = table_of(model)
        self.key = key
        self.reads = tuple(reads) if reads is not None else None
        self.rows: dict[Any, dict[str, Any]] = {}
        self.dirty: set[Any] = set()
        self.partial: dict[Any, set[str]] = {}
        """Rows loaded with `reads` only, and the columns the batch changed in each."""
        self._defaults = _defaults_of(self.table)

    def load(self, conn: Connection, keys: Iterable[Any]) -> None:
        wanted = [k for k in set(keys) if k not in self.rows]
        if not wanted:
            return
        columns = (self.key, *self.reads) if self.reads is not None else tuple(c.name for c in self.table.columns)
        for row in _prepared(RowReader, conn.dialect, self.table, self.key, columns).read(conn, wanted):
            self.rows[row[self.key]] = row
            if self.reads is not None:
                self.partial[row[self.key]] = set()

    def get(self, key: Any) -> dict[str, Any] | None:
        return self.rows.get(key)

    def create(self, key: Any, **values: Any) -> dict[str, Any]:
        row = self._defaults.copy()
        row[self.key] = key
        row.update(values)
        self.rows[key] = row
        self.partial.pop(key, None)
        self.dirty.add(key)
        return row

    def update(self, key: Any, **values: Any) -> dict[str, Any] | None:
        row = self.rows.get(key)
        if row is not None:
            row.update(values)
            self.dirty.add(key)
            changed = self.partial.get(key)
            if changed is not None:
                changed.update(values)
        return row

    def flush(self, conn: Connection) -> None:
        whole = [self.rows[k] for k in self.dirty if k not in self.partial]
        upsert(conn, self.table, whole, [self.key])
        by_columns: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for k in self.dirty:
            changed = self.partial.get(k)
            if changed:
                by_columns.setdefault(tuple(sorted(changed)), []).append(self.rows[k])
        for columns, rows in by_columns.items():
            _prepared(ColumnUpdater, conn.dialect, self.table, self.key, columns).write(conn, rows)
        self.dirty.clear()


def to_load(touches: Iterable[tuple[Any, bool]]) -> set[Any]:
    """The keys a batch must load: those it reads or changes before (or without) creating them.

    `touches` are (key, creates) in event order. A row the batch creates first is replaced whole, so
    whatever the table held for it cannot matter; loading only the rest saves a query per batch on a
    rebuild, where most rows are created and finished within one batch.
    """
    created: set[Any] = set()
    wanted: set[Any] = set()
    for key, creates in touches:
        if creates:
            created.add(key)
        elif key not in created:
            wanted.add(key)
    return wanted


def _defaults_of(table: sa.Table) -> dict[str, Any]:
    return {c.name: _default(c) for c in table.columns}


def _default(column: sa.Column[Any]) -> Any:
    default = column.default
    if default is None:
        return None
    arg = getattr(default, "arg", None)
    if callable(arg):
        return arg(None)
    return arg


def upsert(conn: Connection, table: sa.Table, rows: list[dict[str, Any]], keys: list[str]) -> None:
    """Insert rows, replacing every other column of a row whose key is already there."""
    if rows:
        _prepared(TableWriter, conn.dialect, table, tuple(keys), True).write(conn, rows)


def insert_ignoring_duplicates(conn: Connection, table: sa.Table, rows: list[dict[str, Any]]) -> None:
    if rows:
        _prepared(TableWriter, conn.dialect, table, (), False).write(conn, rows)


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
        # Projections whose stream versions all came from one source that delivers every event once, in
        # stream order (the application's notification log): see `process`. Shared with `only` views.
        self._sole_source: dict[str, tuple[str, int]] = {}
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

    def process(
        self, envelopes: Sequence[EventEnvelope], source: str, partition: int = 0, *, ordered: bool = False
    ) -> int:
        """Apply a batch of one partition of a source: see `process_partitions`."""
        return self.process_partitions({partition: envelopes}, source, ordered=ordered)

    def process_partitions(
        self, batches: Mapping[int, Sequence[EventEnvelope]], source: str, *, ordered: bool = False
    ) -> int:
        """Apply a batch from each of some partitions of a source (each in position order) to every projection,
        with their checkpoints: those `ahead` first, in a transaction of their own, then the others in one more;
        returns the events applied (once per projection applying them).

        A stream's events all travel in one partition (the stream id is the key), so the partitions' batches
        are applied one after the other in the same transactions: a consumer of six partitions commits twice a
        poll, not twelve times.

        A failure in the second transaction leaves the first one's projections applied; each projection resumes
        from its own checkpoint. (A transaction per projection would cost a commit each, and the commits
        rewrite the same checkpoint and stream-version pages: a tenth of a Kafka consumer's time.)

        `ordered` says the source delivers each event once, at increasing positions, and each stream's
        events in version order (the application's own notification log does). A projection that has only
        ever been fed from that source has then never applied a version of a stream as high as one it has
        not seen yet, so its stream versions need not be read back; they are still written, for any other
        source that feeds it later (and only a batch of one partition is taken for such a source).
        """
        upcasted = {p: [upcast(e) for e in envelopes] for p, envelopes in batches.items() if envelopes}
        if not upcasted:
            return 0
        sole_partition = next(iter(upcasted)) if ordered and len(upcasted) == 1 else None
        applied = 0
        projections = list(self.projections.values())
        for group in ([p for p in projections if p.ahead], [p for p in projections if not p.ahead]):
            if not group:
                continue
            with self.engine.begin() as conn:
                lock_checkpoints(conn, exclusive=False)
                checkpoints = _checkpoints(conn, [p.name for p in group])
                versions_out: list[dict[str, Any]] = []
                checkpoints_out: list[dict[str, Any]] = []
                for projection in group:
                    name = projection.name
                    own = checkpoints.get(name, {})
                    relevant: list[EventEnvelope] = []
                    for partition, envelopes in upcasted.items():
                        after = own.get((source, partition))
                        relevant += _after(envelopes, after, projection.event_types)
                        last = envelopes[-1].position
                        if last is not None and (after is None or last > after):
                            checkpoints_out.append(
                                {"consumer": name, "source": source, "partition": partition, "position": last}
                            )
                    trusted = sole_partition is not None and self._sole(conn, name, own, source, sole_partition)
                    applied += self._apply(conn, projection, relevant, trusted, versions_out)
                upsert(conn, table_of(StreamVersion), versions_out, ["projection", "stream_id"])
                upsert(conn, table_of(Checkpoint), checkpoints_out, ["consumer", "source", "partition"])
        if not ordered:
            for name in self.projections:
                self._sole_source.pop(name, None)
        return applied

    def _sole(self, conn: Connection, name: str, own: dict[tuple[str, int], int], source: str, partition: int) -> bool:
        """Whether every stream version the projection holds came from this (ordered) source."""
        if self._sole_source.get(name) == (source, partition) and set(own) <= {(source, partition)}:
            return True
        self._sole_source.pop(name, None)
        if own:
            return False
        table = table_of(StreamVersion)
        if conn.execute(sa.select(table.c.stream_id).where(table.c.projection == name).limit(1)).first() is not None:
            return False
        self._sole_source[name] = (source, partition)
        return True

    def _apply(
        self,
        conn: Connection,
        projection: Projection,
        relevant: list[EventEnvelope],
        trusted: bool,
        versions_out: list[dict[str, Any]],
    ) -> int:
        """Apply the events of the projection's types past its checkpoints, less those whose stream version it
        has already applied."""
        if not relevant:
            return 0
        versions = {} if trusted else _stream_versions(conn, projection.name, {e.stream_id for e in relevant})
        todo: list[EventEnvelope] = []
        for event in relevant:
            if event.stream_version > versions.get(event.stream_id, 0):
                versions[event.stream_id] = event.stream_version
                todo.append(event)
        if todo:
            projection.apply(todo, conn)
            name = projection.name
            versions_out += [
                {"projection": name, "stream_id": s, "version": versions[s]} for s in {e.stream_id for e in todo}
            ]
        return len(todo)

    def applied_versions(self, stream_id: str, names: Iterable[str]) -> dict[str, int]:
        """The last version of the stream each named projection applied (0 for none)."""
        with self.engine.connect() as conn:
            return {name: _stream_versions(conn, name, {stream_id}).get(stream_id, 0) for name in names}

    def forget_sources(self, names: Iterable[str]) -> None:
        """Their stream versions were replaced wholesale (a rebuild's switch-over): trust no earlier source."""
        for name in names:
            self._sole_source.pop(name, None)

    def reset(self, names: Iterable[str]) -> None:
        """Drop a projection's tables and checkpoints, and create them empty, for a rebuild from the log."""
        for name in names:
            self._sole_source.pop(name, None)
            projection = self.projections[name]
            tables = [table_of(t) for t in projection.tables]
            with self.engine.begin() as conn:
                for table in reversed(tables):
                    table.drop(conn, checkfirst=True)
                conn.execute(sa.delete(table_of(Checkpoint)).where(table_of(Checkpoint).c.consumer == name))
                conn.execute(sa.delete(table_of(StreamVersion)).where(table_of(StreamVersion).c.projection == name))
            SQLModel.metadata.create_all(self.engine, tables=tables)


def _after(envelopes: Sequence[EventEnvelope], after: int | None, types: frozenset[str]) -> list[EventEnvelope]:
    """The envelopes of these types past a checkpoint."""
    if after is None:
        return [e for e in envelopes if e.event_type in types]
    return [e for e in envelopes if e.position is not None and e.position > after and e.event_type in types]


def lock_checkpoints(conn: Connection, *, exclusive: bool) -> None:
    """Lock the checkpoints for the rest of the transaction, before reading them.

    A batch takes the shared lock and a rebuild's switch-over the exclusive one, so a batch never applies
    events against checkpoints that a switch-over replaces before it commits. PostgreSQL's batches of
    different partitions do not wait for each other; SQLite has one writer at a time, and a write (even of
    nothing) is what takes its lock, where a read alone would run outside the transaction.
    """
    table = table_of(Checkpoint).name
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f'LOCK TABLE "{table}" IN {"EXCLUSIVE" if exclusive else "ROW SHARE"} MODE')
    else:
        conn.exec_driver_sql(f'DELETE FROM "{table}" WHERE 0')


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


def _checkpoints(conn: Connection, consumers: list[str]) -> dict[str, dict[tuple[str, int], int]]:
    """Every stored position of the given consumers, by consumer and (source, partition)."""
    table = table_of(Checkpoint)
    found: dict[str, dict[tuple[str, int], int]] = {}
    rows = conn.execute(
        sa.select(table.c.consumer, table.c.source, table.c.partition, table.c.position).where(
            table.c.consumer.in_(consumers)
        )
    )
    for consumer, source, partition, position in rows:
        found.setdefault(consumer, {})[(source, partition)] = position
    return found


def _stream_versions(conn: Connection, projection: str, stream_ids: set[str]) -> dict[str, int]:
    table = table_of(StreamVersion)
    found: dict[str, int] = {}
    ids = list(stream_ids)
    for start in range(0, len(ids), RowReader.CHUNK):
        rows = conn.execute(
            sa.select(table.c.stream_id, table.c.version).where(
                table.c.projection == projection, table.c.stream_id.in_(ids[start : start + RowReader.CHUNK])
            )
        )
        found.update({stream_id: version for stream_id, version in rows})
    return found


_PREPARED: dict[tuple[Any, ...], Any] = {}


def _prepared(kind: Callable[..., Statement], dialect: Dialect, *args: Any) -> Statement:
    """The statement of this kind for a dialect, table and columns: built once, then reused."""
    key = (kind, dialect, *args)
    statement = _PREPARED.get(key)
    if statement is None:
        statement = _PREPARED[key] = kind(dialect, *args)
    return statement


SQLITE_PAGE_BYTES = 16384
"""The page size of a new SQLite read-model file (an existing file keeps its own).

A lineage row holds the render, moderation and signature documents, about 2 KB: with SQLite's default 4 KB
pages only one fits on a page, which is then half empty. At 16 KB seven fit, and the file is a quarter
smaller; a rebuild writes and copies that much less, and the pages a cascade's batch dirties are as many
fewer (measured with `bench.bench_core`: the rebuild's switch-over 3.3 s to 1.6-2.2 s at 200,000 events,
and the cascade no slower)."""


SQLITE_BUSY_TIMEOUT_S = 30.0
"""How long a connection to a read-model file waits for another connection's lock before it gives up."""


def _write_ahead_log(cursor: sqlite3.Cursor) -> None:
    """Switch the file to WAL mode, waiting out another connection that is switching the same new file.

    The switch takes the file's exclusive lock, and SQLite answers "database is locked" at once to a second
    connection that asks meanwhile, without waiting in its busy handler: six threads opening one fresh
    read-model file together failed in 12 trials of 200 before this waited, and in none of 300 since.
    """
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_S
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.005)


def _engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S})

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection: Any, _: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute(f"PRAGMA page_size={SQLITE_PAGE_BYTES}")  # before WAL: only an empty file takes it
            _write_ahead_log(cursor)
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA cache_size=-65536")  # 64 MiB: a rebuild's batches fit, indexes and all
            cursor.execute("PRAGMA temp_store=MEMORY")
            cursor.close()

        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return sa.create_engine(url, pool_pre_ping=True)
