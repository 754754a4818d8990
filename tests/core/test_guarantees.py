"""The headline guarantees, each tested by breaking the thing it depends on halfway through.

A projection's rows and its checkpoint are one transaction, and so is a revocation with its whole takedown
cascade: a crash between the parts must leave no part behind, and a retry must then do the work once.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
import sqlalchemy as sa

from kernel.errors import NotFound
from projections.framework import ProjectionStore, table_of
from projections.queries import ReadModels
from projections.store import open_store
from projections.tables import Checkpoint
from provenance.application import ProvenanceApp
from provenance.bootstrap import System
from provenance.config import Settings
from provenance.log import read_log
from provenance.runner import LOG_SOURCE, EmbeddedRunner, ProjectionConsumer
from tests.core.support import AppFactory, ProcessDied, face, publish_new


class Crash(ProcessDied):
    """The process dying between two writes."""


@pytest.fixture
def sqlite_app(tmp_path: Path) -> Iterator[ProvenanceApp]:
    app = System(Settings(home=tmp_path / "home", event_store="sqlite")).app
    yield app
    app.close()


def catch_up(app: ProvenanceApp, store: ProjectionStore) -> None:
    EmbeddedRunner(app, [ProjectionConsumer(store)], batch_size=10_000).run_once()


def dump(store: ProjectionStore) -> dict[str, list[tuple[Any, ...]]]:
    """Every row the store holds (read models, stream versions, checkpoints), in key order."""
    metadata = sa.MetaData()
    with store.engine.connect() as conn:
        metadata.reflect(conn)
        return {
            name: [tuple(row) for row in conn.execute(sa.select(table).order_by(*table.primary_key.columns))]
            for name, table in sorted(metadata.tables.items())
        }


def checkpoints(store: ProjectionStore) -> dict[str, int | None]:
    return {name: store.checkpoint(name, LOG_SOURCE) for name in store.projections}


def resume_and_compare_with_a_clean_replay(app: ProvenanceApp, url: str, tmp_path: Path) -> ReadModels:
    """Resume the store at `url` as a new process would (from its stored checkpoints), assert it then holds exactly
    what a replay into an empty store holds, and return its read models."""
    restarted = open_store(url)
    clean = open_store(f"sqlite:///{tmp_path / 'clean.db'}")
    try:
        catch_up(app, restarted)
        catch_up(app, clean)
        assert dump(restarted) == dump(clean)
    finally:
        restarted.engine.dispose()
        clean.engine.dispose()
    return ReadModels(url)


WRITES = ("INSERT", "UPDATE", "REPLACE", "DELETE")


def crash_on_checkpoint_write(store: ProjectionStore, nth: int = 1) -> list[str]:
    """Kill the batch at the `nth` SQL statement that moves checkpoints; returns the writes that came before it."""
    name = table_of(Checkpoint).name
    writes: list[str] = []
    seen = 0

    def before(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        nonlocal seen
        if statement.lstrip().upper().startswith(WRITES):
            if name in statement and not statement.rstrip().endswith("WHERE 0"):  # not the lock that comes first
                seen += 1
                if seen == nth:
                    raise Crash("crash between writing the rows and writing the checkpoint")
            writes.append(statement)

    sa.event.listen(store.engine, "before_cursor_execute", before)
    return writes


def test_projection_rows_and_checkpoint_commit_together(sqlite_app: ProvenanceApp, tmp_path: Path) -> None:
    """A crash before the checkpoint is written must take the batch's rows with it, or a restart doubles them."""
    app = sqlite_app
    bob, tess = app.register_person("bob"), app.register_person("tess", roles=["trust_and_safety"])
    first = publish_new(app, bob, "first")
    url = f"sqlite:///{tmp_path / 'projections.db'}"
    store = open_store(url)
    catch_up(app, store)
    before, positions = dump(store), checkpoints(store)

    second = publish_new(app, bob, "second")
    app.take_down(first, tess, reason_code="spam", statement_of_reasons="spam", source="notice")
    rows_written = crash_on_checkpoint_write(store)
    with pytest.raises(Crash):
        catch_up(app, store)
    assert rows_written, "the crash must come after the batch wrote its rows"

    assert dump(store) == before, "rows of the crashed batch are visible"
    assert checkpoints(store) == positions
    assert ReadModels(store.url).feed_ids() == {str(first)}
    with pytest.raises(NotFound):
        ReadModels(store.url).audit_trail(str(second))
    store.engine.dispose()

    restarted = resume_and_compare_with_a_clean_replay(app, url, tmp_path)
    assert restarted.feed_ids() == {str(second)}
    assert [e["event_type"] for e in restarted.audit_trail(str(second))].count("VideoPublished") == 1


def test_the_feed_commits_ahead_of_the_other_read_models(sqlite_app: ProvenanceApp, tmp_path: Path) -> None:
    """A takedown leaves the feed in a transaction of its own, before the audit trail and the rest are written;
    a crash in theirs keeps the feed's, and a restart applies the rest exactly once."""
    app = sqlite_app
    bob, tess = app.register_person("bob"), app.register_person("tess", roles=["trust_and_safety"])
    video = publish_new(app, bob, "first")
    url = f"sqlite:///{tmp_path / 'projections.db'}"
    store = open_store(url)
    catch_up(app, store)
    before = checkpoints(store)

    app.take_down(video, tess, reason_code="spam", statement_of_reasons="spam", source="notice")
    crash_on_checkpoint_write(store, nth=2)
    with pytest.raises(Crash):
        catch_up(app, store)

    reads = ReadModels(store.url)
    assert reads.feed_ids() == set(), "the feed waited for the other read models"
    moved = {name for name, position in checkpoints(store).items() if position != before[name]}
    assert moved == {"feed"}
    assert [case["status"] for case in reads.takedowns(str(video))] == []
    store.engine.dispose()

    restarted = resume_and_compare_with_a_clean_replay(app, url, tmp_path)
    assert [case["status"] for case in restarted.takedowns(str(video))] == ["open"]


# --- the revocation cascade ----------------------------------------------------------------------------------

FAIL_AT = 3
"""The revocation records 4 events (ConsentRevoked + 3 TakedownIssued); the 3rd one fails."""


def revocation_world(app: ProvenanceApp) -> tuple[UUID, UUID, str, list[UUID]]:
    """Alice's cameo, the grant bob published under, and bob's video with two generations of remixes."""
    alice, bob, carol = (app.register_person(h) for h in ("alice", "bob", "carol"))
    cameo = app.register_cameo(alice, face())
    grant = app.grant_consent(alice, cameo, "approved", grantees=[bob])
    app.grant_consent(alice, cameo, "everyone", scope=["remix"])
    root = publish_new(app, bob, cameo_ids=[cameo])
    child = publish_new(app, carol, "remix", remix_of=root)
    grandchild = publish_new(app, alice, "remix of remix", remix_of=child)
    return alice, cameo, grant, [root, child, grandchild]


def versions(app: ProvenanceApp, cameo: UUID, videos: list[UUID]) -> dict[UUID, int]:
    return {cameo: app.cameo(cameo).version} | {v: app.video(v).version for v in videos}


def assert_nothing_of_the_revocation_recorded(
    app: ProvenanceApp, cameo: UUID, grant: str, videos: list[UUID], before: dict[UUID, int], head: int | None
) -> None:
    assert versions(app, cameo, videos) == before
    assert app.recorder.max_notification_id() == head
    recorded = {envelope.event_type for envelope in read_log(app, 0, 10_000)}
    assert not recorded & {"ConsentRevoked", "TakedownIssued"}
    assert app.cameo(cameo).grants[grant].revocation_event_id is None
    assert all(app.video(v).is_live for v in videos)


def test_a_revocation_that_fails_to_serialise_an_event_records_nothing(
    backend_factory: AppFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cameo's revocation and every takedown of the cascade are one `save()`: all of them, or none."""
    app = backend_factory()
    alice, cameo, grant, videos = revocation_world(app)
    before, head = versions(app, cameo, videos), app.recorder.max_notification_id()
    to_stored_event = app.mapper.to_stored_event
    seen = 0

    def failing_on_the_nth(event: Any) -> Any:
        nonlocal seen
        seen += 1
        if seen == FAIL_AT:
            raise Crash(f"cannot serialise {event.type}")
        return to_stored_event(event)

    monkeypatch.setattr(app.mapper, "to_stored_event", failing_on_the_nth)
    with pytest.raises(Crash):
        app.revoke_consent(alice, cameo, grant, "I no longer consent")
    monkeypatch.undo()

    assert_nothing_of_the_revocation_recorded(backend_factory(), cameo, grant, videos, before, head)
    outcome = app.revoke_consent(alice, cameo, grant, "I no longer consent")
    assert len(outcome.takedowns) == len(videos)  # nothing half-applied lingers in memory either


def test_a_revocation_that_crashes_mid_insert_records_nothing(
    sqlite_app: ProvenanceApp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Events written before a crash inside the store's transaction are rolled back with it."""
    app = sqlite_app
    alice, cameo, grant, videos = revocation_world(app)
    before, head = versions(app, cameo, videos), app.recorder.max_notification_id()
    insert = app.recorder._insert_events  # type: ignore[attr-defined]
    written = 0

    def insert_until_the_nth(cursor: Any, stored_events: Any, **kwargs: Any) -> list[int]:
        nonlocal written
        ids: list[int] = []
        for stored in stored_events:
            if written + 1 == FAIL_AT:
                raise Crash("crash after writing some of the revocation's events")
            ids += insert(cursor, [stored], **kwargs) or []
            written += 1
        return ids

    monkeypatch.setattr(app.recorder, "_insert_events", insert_until_the_nth)
    with pytest.raises(Crash):
        app.revoke_consent(alice, cameo, grant, "I no longer consent")
    assert written == FAIL_AT - 1  # the crash did come after some events were written
    monkeypatch.undo()

    reopened = System(Settings(home=tmp_path / "home", event_store="sqlite")).app
    assert_nothing_of_the_revocation_recorded(reopened, cameo, grant, videos, before, head)
    reopened.close()
