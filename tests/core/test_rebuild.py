"""A rebuild replays the log beside the live read models and switches over at once: readers never see them
empty, the result equals what was built incrementally, and the log goes on from the switch."""

from __future__ import annotations

import itertools
import re
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from kernel.errors import InvalidInput
from projections.framework import SQLITE_PAGE_BYTES, ProjectionStore
from projections.queries import ReadModels
from provenance.bootstrap import System
from provenance.cli import main
from provenance.config import Settings
from provenance.domain.person import person_id_for
from provenance.log import Share, last_position, read_share, split_log
from provenance.rebuild import merge, rebuild, replay_share, scratch_store, switch_over
from provenance.runner import EmbeddedRunner, ProjectionConsumer
from tests.core.support import publish_new
from tests.kafka.support import dump, record_history


@pytest.fixture(params=["sqlite", "postgres read models", "postgres log"])
def system(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[System]:
    """The log and the read models in SQLite, or one of them in PostgreSQL."""
    dsn = None if request.param == "sqlite" else request.getfixturevalue("fresh_postgres_db")
    log = "postgres" if request.param == "postgres log" else "sqlite"
    url = dsn if request.param == "postgres read models" else None
    built = System(Settings(home=tmp_path / "home", event_store=log, postgres_dsn=dsn, projections_url=url))
    yield built
    built.close()


@pytest.mark.parametrize("workers", [1, 3])
def test_a_rebuild_equals_the_incremental_read_models_and_leaves_nothing_behind(system: System, workers: int) -> None:
    """With three workers each share of the log is replayed by a process of its own into a scratch store of its
    own, and the switch-over joins them."""
    record_history(system.app, videos=4)
    system.catch_up()
    before = dump(system.store)
    done = rebuild(system, list(system.store.projections), progress=False, workers=workers)
    assert done.events == last_position(system.app) and dump(system.store) == before
    parts = list(done.parts().values())
    assert len(parts) == 4 and min(parts) >= 0 and sum(parts) == pytest.approx(done.seconds)
    if system.store.engine.dialect.name == "sqlite":
        log = ["events.db"] if system.settings.event_store == "sqlite" else []
        assert sorted(p.name for p in system.settings.home.glob("*.db")) == [*log, "keys.db", "projections.db"]
    else:
        with system.store.engine.connect() as conn:
            schemas = conn.exec_driver_sql("SELECT schema_name FROM information_schema.schemata").scalars().all()
        assert not [s for s in schemas if s.startswith("rebuild_")]
    # The log goes on from the copied checkpoints: a new video shows up once, after the switch.
    person = system.app.person_by_handle("bob").id
    video = publish_new(system.app, person, "after the rebuild")
    system.catch_up()
    assert str(video) in ReadModels(system.store.url).feed_ids()


def test_readers_never_see_the_read_models_empty_during_a_rebuild(system: System) -> None:
    for tag in range(3):
        record_history(system.app, videos=6, tag=str(tag))
    system.catch_up()
    reads = ReadModels(system.store.url)
    published = len(reads.feed_ids())
    assert published > 0
    seen: list[int] = []
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            try:
                seen.append(len(reads.feed_ids()))
            except sa.exc.OperationalError:  # a busy SQLite file: a reader retries, it does not see "empty"
                continue

    reader = threading.Thread(target=read)
    reader.start()
    try:
        rebuild(system, list(system.store.projections), progress=False, batch_size=50)
    finally:
        done.set()
        reader.join()
    assert len(seen) > 1 and min(seen) == published == len(reads.feed_ids())


def _replayed_then_published(system: System, scratch: ProjectionStore) -> tuple[EmbeddedRunner, uuid.UUID]:
    """A scratch store replayed to the end of the log, and a video published live right after."""
    runner = EmbeddedRunner(system.app, [ProjectionConsumer(scratch)])
    runner.run_until_idle()
    person = system.app.person_by_handle("bob").id
    return runner, publish_new(system.app, person, "published while the rebuild switches over")


def test_a_switch_over_waits_for_read_models_that_moved_on_and_loses_no_event(system: System) -> None:
    """A runner elsewhere applies events after the replay ends: switching over then would take them out of
    the read models while that runner goes on from its own position, so the scratch store catches up first."""
    record_history(system.app, videos=3)
    system.catch_up()
    names = list(system.store.projections)
    with scratch_store(system.store, names) as (scratch, source):
        runner, late = _replayed_then_published(system, scratch)
        system.catch_up()  # the live read models have it; the scratch store does not
        assert not switch_over(system.store, names, source)
        assert str(late) in ReadModels(system.store.url).feed_ids()  # nothing was switched
        runner.run_until_idle()
        assert switch_over(system.store, names, source)
    assert str(late) in ReadModels(system.store.url).feed_ids()
    before = dump(system.store)
    system.catch_up()
    assert dump(system.store) == before


def test_a_switch_over_keeps_what_a_topic_consumer_applied_meanwhile(system: System) -> None:
    """The projections role applies events from the Kafka topic, not from the log: what it applied after the
    scratch store's last catch-up must survive the switch-over, and the role goes on from its own offsets."""
    from provenance.log import read_log

    topic = "provenance.events"
    record_history(system.app, videos=3)
    system.store.process(read_log(system.app, 0, 10_000), topic)  # offsets: positions, as the topic's are
    names = list(system.store.projections)
    with scratch_store(system.store, names) as (scratch, source):
        runner, late = _replayed_then_published(system, scratch)
        consumed = last_position(system.app)
        system.store.process(read_log(system.app, 0, 10_000), topic)  # the role applies it from the topic
        assert switch_over(system.store, names, source, catch_up=runner.run_until_idle)
    reads = ReadModels(system.store.url)
    assert str(late) in reads.feed_ids() and reads.video(str(late))["state"] == "published"
    assert all(system.store.checkpoint(name, topic) == consumed for name in names)  # the role's offsets stay
    before = dump(system.store)
    system.store.process(read_log(system.app, 0, 10_000), topic)  # delivered again: applied once, as ever
    assert dump(system.store) == before


def test_the_shares_of_the_log_hold_each_stream_once_and_in_order(system: System) -> None:
    shares = split_log(3)
    record_history(system.app, videos=5)
    for share in shares:  # a person in every share, whatever the random ids of the history fell into
        handle = next(f"sharer{n}" for n in itertools.count() if share.holds(str(person_id_for(f"sharer{n}"))))
        system.app.register_person(handle)
    end = last_position(system.app)
    read = [read_share(system.app, share, 0, end, 1000) for share in shares]
    everything = read_share(system.app, Share(), 0, end, 1000)
    assert all(read)
    assert read == [[e for e in everything if share.holds(e.stream_id)] for share in shares]
    assert sorted((e.position for share in read for e in share), key=int) == [e.position for e in everything]
    assert [e.position for e in read_share(system.app, shares[0], 0, 5, 1000)] == [
        e.position for e in read[0] if e.position is not None and e.position <= 5
    ]


@pytest.mark.parametrize("count", [1, 2, 3, 8])
def test_a_split_of_the_log_holds_each_stream_in_one_share_and_the_shares_alike(count: int) -> None:
    shares = split_log(count)
    ids = [str(uuid.UUID(int=byte << 120 | rest)) for byte in range(256) for rest in (0, 2**120 - 1)]
    holders = [[share for share in shares if share.holds(stream_id)] for stream_id in ids]
    assert len(shares) == count and all(len(held) == 1 for held in holders)
    parts = [sum(held == [share] for held in holders) / len(ids) for share in shares]
    assert all(abs(part - 1 / count) <= 1 / 256 for part in parts)  # to a byte of the ids


@pytest.mark.parametrize("workers", [0, 9])
def test_a_rebuild_refuses_a_number_of_workers_it_cannot_run_and_changes_nothing(tmp_path: Path, workers: int) -> None:
    system = System(Settings(home=tmp_path / "home", event_store="sqlite"))
    record_history(system.app, videos=1)
    system.catch_up()
    before = dump(system.store)
    with pytest.raises(InvalidInput, match="1 to 8 workers"):
        rebuild(system, list(system.store.projections), progress=False, workers=workers)
    assert dump(system.store) == before
    system.close()


def test_the_other_processes_of_a_rebuild_leave_the_log_s_definitions_alone(
    tmp_path: Path, fresh_postgres_db: str
) -> None:
    """With the log in PostgreSQL, the processes replaying the other shares open it without running
    eventsourcing's table and function definitions again: two sessions replacing its functions at once fail
    ("tuple concurrently updated"). Here another session holds those definitions, uncommitted, through the
    rebuild; a process that ran them would wait for it to end."""
    import psycopg

    system = System(Settings(home=tmp_path / "home", event_store="postgres", postgres_dsn=fresh_postgres_db))
    record_history(system.app, videos=4)
    system.catch_up()
    before = dump(system.store)
    definitions = [s for s in system.app.recorder.sql_create_statements if "FUNCTION" in s.as_string()]
    assert definitions
    done: list[int] = []

    def run() -> None:
        done.append(rebuild(system, list(system.store.projections), progress=False, workers=2).events)

    with psycopg.connect(fresh_postgres_db) as holding:  # one transaction, open until the block ends
        for definition in definitions:
            holding.execute(definition)
        rebuilding = threading.Thread(target=run, daemon=True)
        rebuilding.start()
        rebuilding.join(60)
        waited = rebuilding.is_alive()
        holding.rollback()
    rebuilding.join(60)
    assert not waited, "a process of the rebuild waited for the log's definitions"
    assert done == [last_position(system.app)] and dump(system.store) == before
    system.close()


def test_a_merge_that_cannot_open_a_share_changes_nothing_and_can_run_again(tmp_path: Path) -> None:
    """A share that cannot be attached fails the merge before any row moves, and leaves no other share attached
    to the pooled connection: the next merge of that store attaches its shares under the same names."""
    system = System(Settings(home=tmp_path / "home", event_store="sqlite"))
    record_history(system.app, videos=2)
    names = list(system.store.projections)
    with scratch_store(system.store, names) as (into, _), scratch_store(system.store, names) as (share, path):
        replay_share(system.app, share, Share(), last_position(system.app), batch_size=1000)
        empty = dump(into)
        with pytest.raises(sa.exc.OperationalError, match="unable to open"):
            merge(into, [path, str(tmp_path / "no such folder" / "share.db")])
        assert dump(into) == empty
        merge(into, [path])
        assert dump(into) == dump(share) != empty
    system.close()


def test_the_rebuild_command_says_what_it_rebuilt_and_where_the_time_went(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("PROVENANCE_HOME", str(home))
    for name in (
        "PROVENANCE_KAFKA_BOOTSTRAP",
        "PROVENANCE_POSTGRES_DSN",
        "PROVENANCE_EVENT_STORE",
        "PROVENANCE_PROJECTIONS_URL",
    ):
        monkeypatch.delenv(name, raising=False)
    system = System(Settings(home=home, event_store="sqlite"))
    record_history(system.app, videos=2)
    system.catch_up()
    events, before = last_position(system.app), dump(system.store)
    system.close()
    assert main(["rebuild", "feed", "lineage", "--quiet", "--workers", "1"]) == 0
    seconds = r"(\d+\.\d\d) s"
    said = re.fullmatch(
        rf"rebuilt feed, lineage from {events} events in {seconds} by 1 process: replay {seconds}, merge {seconds}, "
        rf"indexes {seconds}, switch-over {seconds}\n",
        capsys.readouterr().out,
    )
    assert said is not None, "the summary line changed"
    total, *parts = map(float, said.groups())
    assert sum(parts) == pytest.approx(total, abs=0.03)  # each rounded to a hundredth
    system = System(Settings(home=home, event_store="sqlite"))
    assert dump(system.store) == before
    system.close()


def test_new_sqlite_read_model_files_have_pages_that_hold_lineage_rows_whole(tmp_path: Path) -> None:
    """The live file and a rebuild's scratch files are made with large pages; a file made before keeps its own."""
    system = System(Settings(home=tmp_path / "home", event_store="sqlite"))
    names = list(system.store.projections)
    with scratch_store(system.store, names) as (scratch, _):
        sizes = [_page_size(store.engine) for store in (system.store, scratch)]
    assert sizes == [SQLITE_PAGE_BYTES, SQLITE_PAGE_BYTES]
    system.close()
    older = tmp_path / "older.db"
    with sqlite3.connect(older) as conn:
        conn.execute("PRAGMA page_size=4096")
        conn.execute("CREATE TABLE kept (x)")
    assert _page_size(ProjectionStore(f"sqlite:///{older}", []).engine) == 4096


def _page_size(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return int(conn.exec_driver_sql("PRAGMA page_size").scalar_one())


def test_a_rebuild_removes_what_one_killed_midway_left_behind(tmp_path: Path) -> None:
    system = System(Settings(home=tmp_path / "home", event_store="sqlite"))
    record_history(system.app, videos=2)
    system.catch_up()
    live = Path(str(system.store.engine.url.database))
    killed = live.with_name(f"{live.stem}.rebuild-0123456789ab.db")  # as `scratch_store` names one
    for leftover in (killed, killed.with_name(killed.name + "-wal")):
        leftover.write_bytes(b"half a replay")
    rebuild(system, list(system.store.projections), progress=False, workers=1)
    assert not list(live.parent.glob(f"{live.stem}.rebuild-*"))
    system.close()


@pytest.mark.parametrize("workers", [1, 2])
def test_what_a_rebuild_parks_is_kept_with_the_live_read_models(tmp_path: Path, workers: int) -> None:
    """An event a projection cannot apply is parked in the scratch store the replay writes; the switch-over
    brings it to the live store, or it was lost with the scratch store and the read models quietly lacked it."""
    from provenance.kafka.dead_letters import DeadLetters

    system = System(Settings(home=tmp_path / "home", event_store="sqlite"))
    record_history(system.app, videos=2)
    system.catch_up()
    live = Path(str(system.store.engine.url.database))
    with sqlite3.connect(system.settings.events_path) as events:  # a later release's event, as a rollback meets it
        events.execute(
            'UPDATE stored_events SET state = CAST(replace(CAST(state AS TEXT), \'"type":"PersonRegistered"\', '
            '\'"type":"FutureThing"\') AS BLOB) WHERE rowid = 1'
        )
    rebuild(system, list(system.store.projections), progress=False, workers=workers)
    parked = DeadLetters(system.store.engine).entries("projections")
    assert [p.position for p in parked] == [1] and live.exists()
    system.close()
