"""Rebuilding projections from the log without taking the read side away.

The log is replayed into a scratch store beside the live one (a SQLite file next to it, or a schema of the
same PostgreSQL database); then one transaction on the live database replaces the projections' rows, their
checkpoints and their stream versions with the scratch store's. Readers see the old read models until that
commit and the new ones after it, never an empty or half-built one; events recorded meanwhile are applied
after the switch from the copied checkpoints, so nothing is missed or applied twice.
"""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from kernel.errors import ProvenanceError
from projections.framework import Checkpoint, ProjectionStore, StreamVersion, lock_checkpoints, table_of
from provenance.bootstrap import System
from provenance.freshness import LOG_SOURCE
from provenance.log import last_position
from provenance.runner import EmbeddedRunner, ProjectionConsumer

SWITCH_ATTEMPTS = 10
"""How often a switch-over is tried again after catching up with live read models that moved on meanwhile."""

SCRATCH = "rebuild"
"""The name the scratch store is attached under (SQLite) or the prefix of its schema (PostgreSQL)."""


class Rebuilt(NamedTuple):
    events: int
    seconds: float
    """The whole rebuild: the replay into the scratch store and the switch-over."""
    switch_over_seconds: float


def rebuild(system: System, names: Sequence[str], progress: bool = True, batch_size: int = 20_000) -> Rebuilt:
    """Replay the whole log into the named projections and switch over to them."""
    from tqdm import tqdm

    live = system.store
    started = time.perf_counter()
    with scratch_store(live, names) as (scratch, source):
        runner = EmbeddedRunner(system.app, [ProjectionConsumer(scratch)], batch_size=batch_size)
        with tqdm(
            total=last_position(system.app),
            unit="ev",
            disable=not progress or not sys.stderr.isatty(),
            file=sys.stderr,
        ) as bar:
            count = runner.run_once(progress=bar.update)
        count += runner.run_until_idle()  # what was recorded while the replay ran
        index(scratch)
        switching = time.perf_counter()
        for _ in range(SWITCH_ATTEMPTS):
            if switch_over(live, names, source):
                break
            count += runner.run_until_idle()  # the live read models moved past the scratch store's
        else:
            raise ProvenanceError(
                "the live read models have applied more of the log than a replay of it reaches; are they built "
                "from this event store? Nothing was switched over"
            )
        switched = time.perf_counter()
    return Rebuilt(count, switched - started, switched - switching)


@contextmanager
def scratch_store(live: ProjectionStore, names: Sequence[str]) -> Iterator[tuple[ProjectionStore, str]]:
    """An empty store for the named projections beside `live`, and how the live database names it."""
    projections = [live.projections[name] for name in names]
    tag = uuid.uuid4().hex[:12]
    if live.engine.dialect.name == "sqlite":
        database = live.engine.url.database
        if not database or database == ":memory:":
            raise ValueError("an in-memory projections database cannot be rebuilt beside itself")
        path = Path(database).with_name(f"{Path(database).stem}.{SCRATCH}-{tag}.db")
        scratch = ProjectionStore(f"sqlite:///{path}", projections)
        _without_durability(scratch)
        _without_indexes(scratch)
        try:
            yield scratch, str(path)
        finally:
            scratch.engine.dispose()
            for leftover in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
                leftover.unlink(missing_ok=True)
        return
    schema = f"{SCRATCH}_{tag}"
    with live.engine.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    url = live.engine.url.update_query_dict({"options": f"-csearch_path={schema}"})
    scratch = ProjectionStore(url.render_as_string(hide_password=False), projections)
    try:
        yield scratch, schema
    finally:
        scratch.engine.dispose()
        with live.engine.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


SCRATCH_CACHE_KIB = 512 * 1024
"""The scratch store's page cache: the tables' primary keys are random ids, so every row a replay inserts
touches a random page of its table's key index, and once that index outgrows the cache each insert reads from
disk (the secondary indexes are built after the replay, see `_without_indexes`)."""


def _without_durability(scratch: ProjectionStore) -> None:
    """A scratch file is thrown away if anything fails, so its writes need neither a journal nor a sync."""

    @sa.event.listens_for(scratch.engine, "connect")
    def _pragmas(dbapi_connection: Any, _: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=OFF")
        cursor.execute("PRAGMA synchronous=OFF")
        cursor.execute(f"PRAGMA cache_size=-{SCRATCH_CACHE_KIB}")
        cursor.close()

    scratch.engine.dispose()  # connections opened to create the tables reconnect with these settings


def _secondary_indexes(store: ProjectionStore) -> list[sa.Index]:
    return [i for p in store.projections.values() for model in p.tables for i in table_of(model).indexes]


def _without_indexes(scratch: ProjectionStore) -> None:
    """Drop the scratch tables' secondary indexes for the replay; `index` builds them once it is done.

    Their keys are content hashes and ids, so each row a replay inserts would land on a random page of each
    index, and once the indexes outgrow the page cache every insert reads from disk: the rate falls as the log
    grows. An index built over the finished table sorts its keys once and writes its pages in order.
    """
    with scratch.engine.begin() as conn:
        for secondary in _secondary_indexes(scratch):
            secondary.drop(conn)


def index(scratch: ProjectionStore) -> None:
    """Build the secondary indexes dropped for the replay (a PostgreSQL scratch schema keeps its own)."""
    with scratch.engine.begin() as conn:
        for secondary in _secondary_indexes(scratch):
            secondary.create(conn, checkfirst=True)


def switch_over(live: ProjectionStore, names: Sequence[str], source: str) -> bool:
    """Replace the named projections' rows, checkpoints and stream versions with the scratch store's, at once.

    Refused (False, nothing changed) while the live projections have applied more of the log than the scratch
    store: a runner following the log elsewhere would otherwise go on from its own position, past events that
    the switch-over took out of the read models. The check runs after the transaction holds the write lock on
    the checkpoints, so no live runner can move between the check and the commit.
    """
    tables = [table_of(model).name for name in names for model in live.projections[name].tables]
    checkpoints, versions = table_of(Checkpoint).name, table_of(StreamVersion).name
    sqlite = live.engine.dialect.name == "sqlite"
    prefix = f"{SCRATCH}." if sqlite else f'"{source}".'
    chosen = ", ".join(f"'{name}'" for name in names)  # projection names are ours, never user input
    with live.engine.connect() as conn:
        if sqlite:  # ATTACH works outside a transaction only
            conn.exec_driver_sql(f"ATTACH DATABASE ? AS {SCRATCH}", (source,))
            conn.commit()
        try:
            with conn.begin():
                lock_checkpoints(conn, exclusive=True)
                if _behind(conn, f'{prefix}"{checkpoints}"', f'"{checkpoints}"', chosen):
                    return False
                for table in tables:
                    conn.exec_driver_sql(f'DELETE FROM "{table}"')
                    conn.exec_driver_sql(f'INSERT INTO "{table}" SELECT * FROM {prefix}"{table}"')
                for table, column in ((checkpoints, "consumer"), (versions, "projection")):
                    conn.exec_driver_sql(f'DELETE FROM "{table}" WHERE {column} IN ({chosen})')
                    conn.exec_driver_sql(
                        f'INSERT INTO "{table}" SELECT * FROM {prefix}"{table}" WHERE {column} IN ({chosen})'
                    )
        finally:
            if sqlite:
                conn.exec_driver_sql(f"DETACH DATABASE {SCRATCH}")
                conn.commit()
    live.forget_sources(names)
    return True


def _behind(conn: Connection, scratch: str, live: str, chosen: str) -> bool:
    """Whether any of the chosen projections has applied more of the application's log live than in scratch."""
    return (
        conn.exec_driver_sql(
            f"SELECT 1 FROM {live} AS l LEFT JOIN {scratch} AS s ON s.consumer = l.consumer "
            f"AND s.source = l.source AND s.partition = l.partition WHERE l.consumer IN ({chosen}) "
            f"AND l.source = '{LOG_SOURCE}' AND (s.position IS NULL OR s.position < l.position) LIMIT 1"
        ).first()
        is not None
    )
