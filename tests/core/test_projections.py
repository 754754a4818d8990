"""Read models: what they show, and that they are exact under redelivery, crashes and rebuilds."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from projections.feed import FeedProjection
from projections.framework import ProjectionStore, table_of
from projections.queries import ReadModels
from projections.store import all_projections, open_store
from provenance.application import ProvenanceApp
from provenance.bootstrap import System
from provenance.config import Settings
from provenance.console.statements import block_statement
from provenance.kafka.positions import open_projections
from provenance.log import read_log
from provenance.runner import EmbeddedRunner, ProjectionConsumer
from schemas.envelope import EventEnvelope
from tests.core.support import ProcessDied, face, publish_new


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[ProvenanceApp, ProjectionStore, ReadModels]]:
    app = System(Settings(home=tmp_path / "home", event_store="sqlite")).app
    store = open_store(f"sqlite:///{tmp_path / 'projections.db'}")
    yield app, store, ReadModels(store.url)
    app.close()
    store.engine.dispose()


def catch_up(app: ProvenanceApp, store: ProjectionStore, batch_size: int = 1000) -> None:
    EmbeddedRunner(app, [ProjectionConsumer(store)], batch_size=batch_size).run_once()


def dump(store: ProjectionStore) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every projection table, in key order: two stores are equal when their dumps are."""
    out: dict[str, list[tuple[Any, ...]]] = {}
    with store.engine.connect() as conn:
        for projection in store.projections.values():
            for model in projection.tables:
                table = table_of(model)
                rows = conn.execute(sa.select(table).order_by(*table.primary_key.columns)).all()
                out[table.name] = [tuple(r) for r in rows]
    return out


def test_feed_is_newest_first_with_cursor_pagination(world: Any) -> None:
    app, store, reads = world
    bob = app.register_person("bob")
    videos = [publish_new(app, bob, f"clip {i}") for i in range(7)]
    catch_up(app, store)
    seen: list[str] = []
    cursor = None
    while True:
        page = reads.feed(limit=3, cursor=cursor)
        seen += [item["video_id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [str(v) for v in reversed(videos)]


def test_lineage_cameos_consent_audit_and_takedowns(world: Any) -> None:
    app, store, reads = world
    alice, bob, tess = (
        app.register_person("alice"),
        app.register_person("bob"),
        app.register_person("tess", roles=["trust_and_safety"]),
    )
    cameo = app.register_cameo(alice, face())
    grant = app.grant_consent(alice, cameo, "everyone")
    root = publish_new(app, bob, cameo_ids=[cameo])
    child = publish_new(app, alice, "remix", remix_of=root)
    grandchild = publish_new(app, bob, "remix 2", remix_of=child)
    app.take_down(root, tess, reason_code="harassment", statement_of_reasons="targets a person", source="notice")
    catch_up(app, store)

    assert sorted(reads.descendants(str(root))) == sorted([str(child), str(grandchild)])
    assert reads.children(str(root)) == [str(child)]
    assert reads.ancestors(str(grandchild)) == [str(child), str(root)]
    assert [c["grant_id"] for c in reads.cameos_of(str(root))] == [grant]
    assert reads.feed_ids() == set()
    cases = {c["video_id"]: c for v in (root, child, grandchild) for c in reads.takedowns(str(v))}
    assert cases[str(root)]["source"] == "notice" and cases[str(child)]["source"] == "cascade"
    assert cases[str(child)]["caused_by_stream"] == str(root)
    trail = reads.audit_trail(str(root))
    assert [e["event_type"] for e in trail] == [
        "GenerationRequested",
        "VideoRendered",
        "ModerationDecided",
        "VideoSigned",
        "VideoPublished",
        "RemixRecorded",
        "TakedownIssued",
    ]
    assert trail[-1]["reason"] == "harassment: targets a person"
    assert trail[-1]["actor"] == str(tess)
    assert reads.status(str(root))["status"] == "taken_down"
    assert reads.grants(str(cameo), live_only=True)[0]["grant_id"] == grant
    assert reads.resolve(soft_binding=f"org.provenance.dct-qim.v1:{str(child)[:16]}") == str(child)


def test_consent_status_is_the_write_sides_decision_not_the_grant_a_video_was_made_under(world: Any) -> None:
    app, store, reads = world
    alice, bob = app.register_person("alice"), app.register_person("bob")
    cameo = app.register_cameo(alice, face())
    app.grant_consent(alice, cameo, "everyone", scope=["remix"])
    first = app.grant_consent(alice, cameo, "everyone", scope=["generate"])
    second = app.grant_consent(alice, cameo, "approved", grantees=[bob], scope=["generate"])
    video = publish_new(app, bob, cameo_ids=[cameo])
    remix = publish_new(app, alice, "remix", remix_of=video)
    app.revoke_consent(alice, cameo, first, "not everyone any more: bob still may")
    catch_up(app, store)
    assert app.video(video).is_live and str(video) in reads.feed_ids()
    assert reads.status(str(video)) is not None and reads.status(str(video))["consent_revoked"] is False
    assert [(c["grant_id"], c["consent"]) for c in reads.cameos_of(str(video))] == [(first, "covered_by_another_grant")]

    app.revoke_consent(alice, cameo, second, "not bob either")
    catch_up(app, store)
    assert not app.video(video).is_live and str(video) not in reads.feed_ids()
    for taken_down in (video, remix):  # the remix came down in the cascade, for the same reason
        assert reads.status(str(taken_down))["consent_revoked"] is True  # type: ignore[index]
    assert [c["consent"] for c in reads.cameos_of(str(video))] == ["revoked"]


def test_a_cascade_case_is_judged_by_the_case_it_began_with_and_a_rejected_cameo_covers_no_one(world: Any) -> None:
    app, store, reads = world
    alice, bob = app.register_person("alice"), app.register_person("bob")
    tess = app.register_person("tess", roles=["trust_and_safety"])
    cameo = app.register_cameo(alice, face())
    grant = app.grant_consent(alice, cameo, "everyone")
    parent = publish_new(app, bob, cameo_ids=[cameo])
    remix = publish_new(app, alice, "remix", remix_of=parent)
    in_flight = app.request_generation(alice, "another remix", remix_of=parent)
    notice = app.take_down(parent, tess, reason_code="copyright", statement_of_reasons="a notice", source="notice")
    catch_up(app, store)
    assert reads.status(str(in_flight))["status"] == "blocked"  # type: ignore[index]
    assert reads.status(str(in_flight))["consent_revoked"] is False  # type: ignore[index]  # blocked for the notice
    blocked = block_statement(reads.video(str(in_flight)), reads.block_origin(str(in_flight)))
    assert blocked is not None and blocked["category"] == "STATEMENT_CATEGORY_INTELLECTUAL_PROPERTY_INFRINGEMENTS"
    app.reinstate(parent, notice[0].case_id, tess, "the notice was withdrawn")  # the remix stays down
    later = app.request_generation(alice, "a remix after", remix_of=parent)
    app.revoke_consent(alice, cameo, grant, "no more")  # the parent comes down again, now for consent
    catch_up(app, store)
    assert reads.status(str(parent))["consent_revoked"] is True  # type: ignore[index]
    assert reads.status(str(remix))["consent_revoked"] is False  # type: ignore[index]  # down for the notice
    assert reads.status(str(later))["consent_revoked"] is True  # type: ignore[index]  # blocked for the revocation
    blocked = block_statement(reads.video(str(later)), reads.block_origin(str(later)))
    assert blocked is not None and blocked["category"] == "STATEMENT_CATEGORY_NON_CONSENSUAL_BEHAVIOUR"

    app.hold_cameo(cameo, str(app.register_cameo(bob, face(3))), 0.97)
    app.review_cameo(cameo, tess, "rejected", "not alice's face")
    catch_up(app, store)
    assert [c["consent"] for c in reads.cameos_of(str(parent))] == ["rejected"]
    assert reads.grants(str(cameo), live_only=True) == []


def test_one_command_id_on_two_cameos_names_two_grants(world: Any) -> None:
    app, store, reads = world
    alice = app.register_person("alice")
    cameos = [app.register_cameo(alice, face(n)) for n in (1, 2)]
    grants = [app.grant_consent(alice, c, "everyone", command_id="http:person:alice:key-1") for c in cameos]
    catch_up(app, store)
    assert grants[0] != grants[1]
    assert [[g["grant_id"] for g in reads.grants(str(c))] for c in cameos] == [[grants[0]], [grants[1]]]
    assert app.grant_consent(alice, cameos[0], "everyone", command_id="http:person:alice:key-1") == grants[0]  # a retry


def test_a_trace_answers_for_any_spelling_of_an_id_and_any_depth_of_remixes(
    world: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import base64

    from kernel.errors import InvalidInput
    from projections import queries

    app, store, reads = world
    alice, tess = app.register_person("alice"), app.register_person("tess", roles=["trust_and_safety"])
    cameo = app.register_cameo(alice, face())
    chain = [publish_new(app, alice, "root", cameo_ids=[cameo])]
    for n in range(5):
        chain.append(publish_new(app, alice, f"remix {n}", remix_of=chain[-1]))
    app.take_down(chain[-1], tess, reason_code="spam", statement_of_reasons="spam", source="notice")
    catch_up(app, store)

    monkeypatch.setattr(queries, "TRACE_PARENTS", 2)
    spelt = f"  {{{str(chain[-1]).upper()}}} "
    trace = reads.trace(spelt)
    assert trace["video_id"] == str(chain[-1]) and len(trace["takedowns"]) == 1 and len(trace["cameos"]) == 1
    assert trace["ancestors"] == [str(v) for v in reversed(chain[:-1])]
    assert trace["parent"]["video_id"] == str(chain[-2]) and trace["parent"]["parent"]["parent"] is None
    assert reads.status(spelt)["status"] == "taken_down"  # type: ignore[index]

    past_the_calendar = base64.urlsafe_b64encode(f"0001-01-01T00:00:00+01:00|{chain[0]}".encode()).decode()
    with pytest.raises(InvalidInput, match="cursor"):
        reads.feed(cursor=past_the_calendar)


def test_redelivered_events_are_applied_once(world: Any) -> None:
    app, store, _reads = world
    bob = app.register_person("bob")
    publish_new(app, bob)
    catch_up(app, store)
    before = dump(store)
    events = read_log(app, 0, 1000)
    # A duplicate delivery from another source (e.g. a Kafka partition) must change nothing.
    store.process(events, source="kafka:provenance.events", partition=0)
    assert dump(store) == before


class CrashingFeed(FeedProjection):
    """The feed projection, dying halfway through its nth batch."""

    def __init__(self, crash_on_batch: int) -> None:
        self.batches = 0
        self.crash_on_batch = crash_on_batch

    def apply(self, events: Sequence[EventEnvelope], conn: Connection) -> None:
        self.batches += 1
        super().apply(events, conn)
        if self.batches == self.crash_on_batch:
            raise ProcessDied("crash after writing rows, before commit")


@pytest.mark.parametrize("crash_on_batch", [1, 2, 4])
def test_a_crash_mid_batch_loses_and_duplicates_nothing(world: Any, tmp_path: Path, crash_on_batch: int) -> None:
    app, store, _ = world
    bob = app.register_person("bob")
    for i in range(5):
        publish_new(app, bob, f"clip {i}")
    url = f"sqlite:///{tmp_path / 'crashing.db'}"
    others = [p for p in all_projections() if p.name != "feed"]
    crashing = ProjectionStore(url, [CrashingFeed(crash_on_batch), *others])
    with pytest.raises(ProcessDied, match="crash"):
        catch_up(app, crashing, batch_size=4)
    restarted = open_store(url)  # a new process: stores resume from their checkpoints
    catch_up(app, restarted, batch_size=4)
    catch_up(app, store)
    assert dump(restarted) == dump(store)


def test_rebuild_from_scratch_equals_incremental(world: Any, tmp_path: Path) -> None:
    app, store, _ = world
    alice, bob = app.register_person("alice"), app.register_person("bob")
    cameo = app.register_cameo(alice, face())
    grant = app.grant_consent(alice, cameo, "approved", grantees=[bob])
    app.grant_consent(alice, cameo, "everyone", scope=["remix"])
    for i in range(3):
        root = publish_new(app, bob, f"clip {i}", cameo_ids=[cameo])
        catch_up(app, store, batch_size=3)
        publish_new(app, alice, f"remix {i}", remix_of=root)
    app.revoke_consent(alice, cameo, grant, "no")
    catch_up(app, store, batch_size=5)
    scratch = open_store(f"sqlite:///{tmp_path / 'scratch.db'}")
    catch_up(app, scratch, batch_size=10_000)
    assert dump(scratch) == dump(store)
    store.reset(["feed", "lineage"])
    catch_up(app, store)
    assert dump(scratch) == dump(store)


def test_projections_on_postgresql_equal_those_on_sqlite(world: Any, fresh_postgres_db: str) -> None:
    """The read models are the same on either database (PostgreSQL is chosen by PROVENANCE_PROJECTIONS_URL)."""
    app, store, _ = world
    alice, bob = app.register_person("alice"), app.register_person("bob")
    tess = app.register_person("tess", roles=["member", "trust_and_safety"])
    cameo = app.register_cameo(alice, face())
    grant = app.grant_consent(alice, cameo, "approved", grantees=[bob])
    root = publish_new(app, bob, cameo_ids=[cameo])
    publish_new(app, alice, "remix", remix_of=root)
    other = publish_new(app, bob, "another")
    [case] = app.take_down(other, tess, reason_code="spam", statement_of_reasons="spam")
    app.appeal(other, case.case_id, bob, "not spam")
    app.revoke_consent(alice, cameo, grant, "no")
    postgres = open_store(fresh_postgres_db)
    catch_up(app, postgres, batch_size=4)
    catch_up(app, store)
    assert dump(postgres) == dump(store)
    assert ReadModels(postgres.url).feed_ids() == ReadModels(store.url).feed_ids() == set()
    postgres.engine.dispose()


def test_kafka_offsets_past_32_bits_are_kept_on_postgresql(world: Any, fresh_postgres_db: str) -> None:
    """A long-lived topic's offsets outgrow a 32-bit column; the checkpoint must hold them exactly."""
    import dataclasses

    app, _, _ = world
    publish_new(app, app.register_person("alice"))
    far = 2**40
    envelopes = [dataclasses.replace(e, position=far + i) for i, e in enumerate(read_log(app, 0, 100))]
    postgres = open_store(fresh_postgres_db)
    assert postgres.process(envelopes, "provenance.events", 3) > 0
    assert postgres.checkpoint("feed", "provenance.events", 3) == far + len(envelopes) - 1
    assert postgres.process(envelopes, "provenance.events", 3) == 0  # redelivered: skipped by the checkpoint
    assert len(ReadModels(postgres.url).feed_ids()) == 1
    postgres.engine.dispose()


def test_roles_opening_a_new_read_model_file_together_all_open_it(tmp_path: Path) -> None:
    """Roles of a fresh stack open the same new SQLite file at the same moment: switching it to WAL mode holds
    a lock that SQLite refuses others at once ("database is locked"), without waiting in its busy handler."""
    failures: list[BaseException] = []
    for attempt in range(60):
        url = f"sqlite:///{tmp_path / f'projections-{attempt}.db'}"
        start = threading.Barrier(6)

        def open_it(url: str = url, start: threading.Barrier = start) -> None:
            start.wait()
            try:
                open_projections(url).engine.dispose()
            except Exception as exc:
                failures.append(exc)

        threads = [threading.Thread(target=open_it) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert failures == []


def test_a_cascade_block_recorded_before_it_named_its_takedown_is_judged_by_the_parents_case(
    world: Any, tmp_path: Path
) -> None:
    """`VideoBlocked` v1 did not name the takedown above a blocked remix: the parent's takedown under the block's
    command id is found instead, so a remix blocked for a notice is still no consent lapse after an upgrade."""
    import json
    import sqlite3

    from provenance.application.recent import RecentEvents

    app, store, reads = world
    alice = app.register_person("alice")
    tess = app.register_person("tess", roles=["trust_and_safety"])
    parent = publish_new(app, alice, "a clip")
    in_flight = app.request_generation(alice, "a remix", remix_of=parent)
    app.take_down(parent, tess, reason_code="copyright", statement_of_reasons="a notice", source="notice")
    with sqlite3.connect(Settings(home=tmp_path / "home").events_path) as events:
        [(rowid, state)] = events.execute(
            "SELECT rowid, state FROM stored_events WHERE originator_id = ? ORDER BY originator_version DESC LIMIT 1",
            (in_flight.hex,),
        ).fetchall()
        recorded = json.loads(state)
        assert recorded["type"] == "VideoBlocked"
        del recorded["payload"]["caused_by"]  # as the earlier version recorded it
        recorded["schema_version"] = 1
        events.execute("UPDATE stored_events SET state = ? WHERE rowid = ?", (json.dumps(recorded).encode(), rowid))
    app.recent = RecentEvents()  # the projections read the log as stored, not what this process recorded
    catch_up(app, store)
    assert reads.status(str(in_flight))["consent_revoked"] is False  # type: ignore[index]
