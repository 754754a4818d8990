"""Rebuilding projections from the log without taking the read side away.

The log is replayed into scratch stores beside the live one (SQLite files next to it, or schemas of the
same PostgreSQL database), one for each share of the log's streams, each share by a process of its own; the
shares are merged into the first scratch store, and one transaction on the live database replaces the
projections' rows, their checkpoints and their stream versions with its own. Readers see the old read models
until that commit and the new ones after it, never an empty or half-built one; events recorded meanwhile are
applied after the switch from the copied checkpoints, so nothing is missed or applied twice.
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack, contextmanager
from multiprocessing import get_context
from pathlib import Path
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from kernel.errors import InvalidInput, ProvenanceError
from kernel.memory import no_cyclic_collection
from projections.framework import (
    Checkpoint,
    Projection,
    ProjectionStore,
    StreamVersion,
    lock_checkpoints,
    table_of,
    write_checkpoint,
)
from projections.tables import ParkedEvent
from provenance.application import ProvenanceApp
from provenance.bootstrap import System
from provenance.config import Settings
from provenance.freshness import LOG_SOURCE, furthest_log_checkpoint
from provenance.log import Share, can_share, last_position, read_share, split_log
from provenance.runner import EmbeddedRunner, ProjectionConsumer

SCRATCH = "rebuild"
"""The name the scratch store is attached under (SQLite) or the prefix of its schema (PostgreSQL)."""

EVENTS_PER_WORKER = 20_000
"""A log shorter than this a process for each share would not pay for starting (about a second each)."""

MAX_WORKERS = 8
"""SQLite attaches at most ten databases to a connection; the merge attaches every other share's scratch store."""


class Rebuilt(NamedTuple):
    events: int
    seconds: float
    """The whole rebuild, the sum of its four parts below."""
    workers: int
    """Processes that replayed a share of the log each."""
    replay_seconds: float
    """Making the scratch stores and replaying every share into its own, until the last process is done."""
    merge_seconds: float
    """Merging the shares into one scratch store, and applying there what was recorded meanwhile."""
    index_seconds: float
    """Building the merged store's secondary indexes."""
    switch_over_seconds: float
    """The switch-over, with the scratch store's last catching up with the log, under the live checkpoints' lock."""

    def parts(self) -> dict[str, float]:
        """The seconds of each part, by the name it is printed under (`REBUILD_PARTS`)."""
        seconds = (self.replay_seconds, self.merge_seconds, self.index_seconds, self.switch_over_seconds)
        return dict(zip(REBUILD_PARTS, seconds, strict=True))


REBUILD_PARTS = ("replay", "merge", "indexes", "switch-over")
"""The parts of a rebuild, in order."""


def describe_parts(parts: Mapping[str, float]) -> str:
    """`replay 4.83 s, merge 0.50 s, ...` from seconds by part name."""
    return ", ".join(f"{name} {parts[name]:.2f} s" for name in REBUILD_PARTS)


def rebuild(
    system: System,
    names: Sequence[str],
    progress: bool = True,
    batch_size: int = 20_000,
    workers: int | None = None,
) -> Rebuilt:
    """Replay the whole log into the named projections and switch over to them.

    The log is replayed in `workers` shares of its streams (`provenance.log.Share`) at once, each into a
    scratch store of its own by a process of its own (this one takes the first): by default one per CPU when
    the event store can pick a share's events itself and the log is long enough to pay for the processes.
    """
    from tqdm import tqdm

    live = system.store
    started = time.perf_counter()
    system.checks_read_models = False  # they are being replaced, from this log whatever they followed before
    app = system.app
    furthest = furthest_log_checkpoint(system.reads.db)  # before the log's end: both only grow meanwhile
    end = last_position(app)
    replacing = furthest is not None and furthest[1] > end  # another log than this one: refused until now
    count = _workers(system, end) if workers is None else workers
    if not 1 <= count <= MAX_WORKERS:
        raise InvalidInput(f"a rebuild runs 1 to {MAX_WORKERS} workers, not {count}")
    if count > 1 and not can_share(system.app):
        raise InvalidInput("this event store cannot be replayed in shares: rebuild with one worker")
    shares = split_log(count)
    with ExitStack() as stack:
        stack.enter_context(_rebuilding_alone(live))
        scratches = [stack.enter_context(scratch_store(live, names)) for _ in shares]
        with tqdm(total=end, unit="ev", disable=not progress or not sys.stderr.isatty(), file=sys.stderr) as bar:
            replayed = _replay_shares(system, scratches, shares, end, batch_size, bar.update)
        replayed_at = time.perf_counter()
        scratch, source = scratches[0]
        merge(scratch, [other for _, other in scratches[1:]])
        runner = EmbeddedRunner(system.app, [ProjectionConsumer(scratch)], batch_size=batch_size)
        runner.run_until_idle()  # what was recorded while the replay ran
        merged_at = time.perf_counter()
        index(scratch)
        switching = time.perf_counter()
        if not switch_over(live, names, source, catch_up=runner.run_until_idle, replacing=replacing):
            raise ProvenanceError(
                "the live read models have applied more of the log than a replay of it reaches; are they built "
                "from this event store? Nothing was switched over"
            )
        switched = time.perf_counter()
    events = replayed + max(0, last_position(system.app) - end)
    return Rebuilt(
        events,
        seconds=switched - started,
        workers=count,
        replay_seconds=replayed_at - started,
        merge_seconds=merged_at - replayed_at,
        index_seconds=switching - merged_at,
        switch_over_seconds=switched - switching,
    )


def _workers(system: System, end: int) -> int:
    if not can_share(system.app):
        return 1
    return max(1, min(os.cpu_count() or 1, MAX_WORKERS, end // EVENTS_PER_WORKER))


def _replay_shares(
    system: System,
    scratches: list[tuple[ProjectionStore, str]],
    shares: list[Share],
    end: int,
    batch_size: int,
    progress: Callable[[int], object],
) -> int:
    """Replay each share of the log up to `end` into its scratch store, the first here and the others each in
    a process of its own, all at once; returns the events replayed."""
    first = scratches[0][0]
    if len(shares) == 1:
        return replay_share(system.app, first, shares[0], end, batch_size, progress)
    projections = list(first.projections.values())  # the live store's own, as every scratch store holds
    with ProcessPoolExecutor(len(shares) - 1, mp_context=get_context("spawn")) as pool:
        others = [
            pool.submit(_replay_in_worker, system.settings, store.url, projections, share, end, batch_size)
            for (store, _), share in zip(scratches[1:], shares[1:], strict=True)
        ]
        replayed = replay_share(system.app, first, shares[0], end, batch_size, progress)
        return replayed + sum(future.result() for future in others)


def replay_share(
    app: ProvenanceApp,
    store: ProjectionStore,
    share: Share,
    end: int,
    batch_size: int,
    progress: Callable[[int], object] | None = None,
) -> int:
    """Feed the store's projections with the share's events up to notification id `end`; returns how many.

    `progress` is told how far through the log (of every share) each batch reached.
    """
    consumer = ProjectionConsumer(store)
    position = replayed = 0
    while position < end:
        with no_cyclic_collection():
            batch = read_share(app, share, position, end, batch_size)
            if batch:
                consumer.handle(batch, LOG_SOURCE, 0)
        last = batch[-1].position if len(batch) == batch_size else None
        reached = end if last is None else last
        if progress is not None:
            progress(reached - position)
        position, replayed = reached, replayed + len(batch)
    return replayed


def _replay_in_worker(
    settings: Settings, url: str, projections: list[Projection], share: Share, end: int, batch_size: int
) -> int:
    # The calling process made the log's tables: the workers need not run eventsourcing's definitions again
    # (on PostgreSQL they would only queue for them one after the other, see `provenance.postgres_log`).
    system = System(settings, app_env={"CREATE_TABLE": "no"})
    system.checks_read_models = False  # the calling process checked what it is rebuilding
    app = system.app
    store = ProjectionStore(url, projections)
    try:
        if store.engine.dialect.name == "sqlite":
            _without_durability(store)
        return replay_share(app, store, share, end, batch_size)
    finally:
        store.engine.dispose()
        app.close()


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
        scratch: ProjectionStore | None = None
        try:  # a failure while the scratch file is made (a full disk) leaves nothing behind either
            scratch = ProjectionStore(f"sqlite:///{path}", projections)
            _without_durability(scratch)
            _without_indexes(scratch)
            yield scratch, str(path)
        finally:
            if scratch is not None:
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


@contextmanager
def _rebuilding_alone(live: ProjectionStore) -> Iterator[None]:
    """One rebuild at a time beside a SQLite read-model file (a second one waits for the first); once it holds
    the lock, the scratch files that an earlier rebuild killed midway left behind are removed."""
    database = live.engine.url.database if live.engine.dialect.name == "sqlite" else None
    if not database or database == ":memory:":
        yield
        return
    import fcntl

    path = Path(database)
    with open(path.with_name(f"{path.stem}.{SCRATCH}.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for leftover in path.parent.glob(f"{path.stem}.{SCRATCH}-*.db*"):
            leftover.unlink(missing_ok=True)
        yield


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


def merge(into: ProjectionStore, sources: Sequence[str]) -> None:
    """Move every row of the other shares' scratch stores (`sources`, as `scratch_store` names them) into this
    one, and lower its checkpoints to the lowest of theirs, so that it holds what a replay of the whole log
    would.

    A share further on than another has only moved past events of other shares: from the lowest checkpoint,
    the merged store reads those again and skips them by their stream versions (`forget_sources`).
    """
    if not sources:
        return
    tables = [table_of(model).name for p in into.projections.values() for model in p.tables]
    checkpoints, versions = table_of(Checkpoint), table_of(StreamVersion).name
    with into.engine.connect() as conn, _attached(conn, sources) as prefixes, conn.begin():
        for table in [*tables, versions]:
            for prefix in prefixes:
                conn.exec_driver_sql(f'INSERT INTO "{table}" SELECT * FROM {prefix}"{table}"')
        lowest: dict[tuple[str, str, int], int] = {}
        for prefix in ["", *prefixes]:
            rows = conn.exec_driver_sql(
                f'SELECT consumer, source, "partition", position FROM {prefix}"{checkpoints.name}"'
            )
            for consumer, source, partition, position in rows:
                key = (consumer, source, partition)
                lowest[key] = min(position, lowest.get(key, position))
        for (consumer, source, partition), position in lowest.items():
            write_checkpoint(conn, consumer, source, partition, position)
        for prefix in prefixes:
            _keep_parked(conn, prefix)
    into.forget_sources(into.projections)


_PARKED_COLUMNS = ", ".join(f'"{c.name}"' for c in table_of(ParkedEvent).columns if c.name != "id")


def _keep_parked(conn: Connection, prefix: str) -> None:
    """Bring over what a replay parked in a scratch store (`prefix`), each event once: the scratch store is
    thrown away, and an event parked only there would be lost (and the read models quietly without it)."""
    parked = table_of(ParkedEvent).name
    table_of(ParkedEvent).create(conn, checkfirst=True)  # a store that never parked anything has none yet
    conn.exec_driver_sql(
        f'INSERT INTO "{parked}" ({_PARKED_COLUMNS}) SELECT {_PARKED_COLUMNS} FROM {prefix}"{parked}" AS s '
        f'WHERE NOT EXISTS (SELECT 1 FROM "{parked}" AS l WHERE l.consumer = s.consumer AND l.source = s.source '
        'AND l."partition" = s."partition" AND l.position = s.position)'
    )


@contextmanager
def _attached(conn: Connection, sources: Sequence[str]) -> Iterator[list[str]]:
    """How statements on `conn` name the tables of each scratch store: attached SQLite files, or schemas."""
    if conn.dialect.name != "sqlite":
        yield [f'"{source}".' for source in sources]
        return
    names: list[str] = []
    try:
        for source in sources:  # ATTACH works outside a transaction only
            name = f"{SCRATCH}{len(names)}"
            conn.exec_driver_sql(f"ATTACH DATABASE ? AS {name}", (source,))
            names.append(name)
        conn.commit()
        yield [f"{name}." for name in names]
    finally:  # the pooled connection goes back as it came, even when an ATTACH failed part of the way
        conn.rollback()
        for name in names:
            conn.exec_driver_sql(f"DETACH DATABASE {name}")
        conn.commit()


def switch_over(
    live: ProjectionStore,
    names: Sequence[str],
    source: str,
    catch_up: Callable[[], object] | None = None,
    *,
    replacing: bool = False,
) -> bool:
    """Replace the named projections' rows, stream versions and log checkpoints with those of the scratch store
    `source` (as `scratch_store` names it), at once.

    Each table is emptied and filled by a single `INSERT ... SELECT *` from the scratch store's table of the
    same definition, indexes and all: SQLite then copies the records and index entries as they are, in order,
    without decoding a row or searching an index for each one.

    Once the transaction holds the write lock on the live checkpoints, so that no live runner or consumer can
    apply anything more until it commits, `catch_up` brings the scratch store to the end of the log: past
    everything the live read models applied, from the log or from a Kafka topic (the relay publishes only
    what the log holds). Checkpoints of other sources (a topic's partitions) stay as they are: their consumers
    go on from there, and what they deliver again is skipped by its stream version.

    Refused (False, nothing changed) if the live projections have still applied more of the log than the
    scratch store: a runner following another log would otherwise go on past events the switch-over took out.
    With `replacing` (the live read models were already ahead of this log when the rebuild began: its event
    store was replaced, and every command refuses them) they are replaced all the same, and every other
    consumer's position in the log past its end (the consent watch's, the expiry timer's; not another projection's,
    whose rows are still the other log's) is brought back to it.
    """
    tables = [table_of(model).name for name in names for model in live.projections[name].tables]
    checkpoints, versions = table_of(Checkpoint).name, table_of(StreamVersion).name
    chosen = ", ".join(f"'{name}'" for name in names)  # projection names are ours, never user input
    log = f"source = '{LOG_SOURCE}'"
    with live.engine.connect() as conn, _attached(conn, [source]) as (prefix,), conn.begin():
        lock_checkpoints(conn, exclusive=True)
        if catch_up is not None:  # before this transaction reads the scratch store, which a reader would lock
            catch_up()
        if not replacing and _behind(conn, f'{prefix}"{checkpoints}"', f'"{checkpoints}"', chosen):
            return False
        for table in tables:
            conn.exec_driver_sql(f'DELETE FROM "{table}"')
            conn.exec_driver_sql(f'INSERT INTO "{table}" SELECT * FROM {prefix}"{table}"')
        for table, where in (
            (checkpoints, f"consumer IN ({chosen}) AND {log}"),
            (versions, f"projection IN ({chosen})"),
        ):
            conn.exec_driver_sql(f'DELETE FROM "{table}" WHERE {where}')
            conn.exec_driver_sql(f'INSERT INTO "{table}" SELECT * FROM {prefix}"{table}" WHERE {where}')
        if replacing:
            end = f'(SELECT COALESCE(MAX(position), 0) FROM {prefix}"{checkpoints}" WHERE {log})'
            projections = ", ".join(f"'{name}'" for name in live.projections)  # those not chosen stay refused
            conn.exec_driver_sql(
                f'UPDATE "{checkpoints}" SET position = {end} '
                f"WHERE {log} AND position > {end} AND consumer NOT IN ({projections})"
            )
        _keep_parked(conn, prefix)
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
