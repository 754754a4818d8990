"""Poison messages are parked with their reason, never block the partition, and replay once the cause is fixed."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from projections.framework import Projection, ProjectionStore, table_of
from projections.queries import ReadModels
from projections.store import all_projections, open_store
from projections.tables import AuditEntry, LineageVideo
from provenance.application import ProvenanceApp
from provenance.bootstrap import System
from provenance.config import Settings
from provenance.kafka.client import topic_source
from provenance.kafka.consumers import ConsumerOptions, TopicFollower
from provenance.kafka.dead_letters import DeadLetters, handler_replayer, projection_replayer
from provenance.kafka.positions import Positions, open_engine
from provenance.kafka.relay import Relay, RelayOptions
from provenance.kafka.roles import run_worker_consumer
from provenance.kafka.sinks import PROJECTIONS, ProjectionSink
from provenance.log import read_log
from schemas import catalogue
from schemas import events as e
from schemas.envelope import EventEnvelope
from tests.core.support import rendered
from tests.kafka.support import end_offsets, more_videos, produce_raw, record_history, relay_all, running, wait_for

pytestmark = pytest.mark.kafka


def envelope(event_type: str, stream_type: str, payload: dict[str, Any], version: int = 1) -> bytes:
    return orjson.dumps(
        {
            "event_id": str(uuid.uuid4()),
            "stream_type": stream_type,
            "stream_id": str(uuid.uuid4()),
            "stream_version": 1,
            "event_type": event_type,
            "schema_version": version,
            "occurred_at": datetime.now(UTC).isoformat(),
            "actor": "someone-else's-producer",
            "command_id": None,
            "payload": payload,
        }
    )


class BrokenOnBoom(Projection):
    """A projection with a bug that only one event triggers."""

    def __init__(self, inner: Projection) -> None:
        self.inner = inner
        self.name, self.tables, self.event_types = inner.name, inner.tables, inner.event_types

    def apply(self, events: Sequence[EventEnvelope], conn: Connection) -> None:
        if any(ev.payload.get("prompt") == "boom" for ev in events):
            raise KeyError("boom")
        self.inner.apply(events, conn)


def rendered_videos(app: ProvenanceApp) -> list[str]:
    """The video of every VideoRendered event on record, once per event."""
    return sorted(ev.stream_id for ev in read_log(app, 0, 100_000) if ev.event_type == "VideoRendered")


def consume_to_the_end(follower: TopicFollower, bootstrap: str, topic: str) -> None:
    ends = end_offsets(bootstrap, topic)
    sink = follower.sink

    def done() -> bool:
        follower.poll_once()
        return all(sink.resume_position(topic_source(topic), p) == end - 1 for p, end in ends.items() if end)

    wait_for(done, f"{sink.name} to reach the end of the topic")


def test_poison_is_parked_later_events_flow_and_replay_works_once_fixed(
    settings: Settings, app: ProvenanceApp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bootstrap, topic = settings.kafka_bootstrap, settings.kafka_topic
    assert bootstrap is not None
    relay = Relay(app, Positions(open_engine(settings.projections_database)), bootstrap, topic, RelayOptions())
    record_history(app, videos=2)
    boom = app.request_generation(app.register_person("dave"), "boom")
    relay_all(relay)
    newer_follow = envelope("Followed", "person", {"person_id": str(uuid.uuid4())}, version=2)
    poison = {
        "not json": b"{this is not json",
        "unknown type": envelope("VideoRated", "video", {"stars": 5}),
        "newer version": newer_follow,
        "bad payload": envelope("ConsentGranted", "cameo", {"grant_id": "g", "audience": "the moon"}),
    }
    produce_raw(bootstrap, topic, [(str(uuid.uuid4()), raw) for raw in poison.values()])
    later = more_videos(app, "erin", 3)  # after the poison, on every partition
    relay_all(relay)

    store = ProjectionStore(
        settings.projections_database, [BrokenOnBoom(p) if p.name == "feed" else p for p in all_projections()]
    )
    follower = TopicFollower(bootstrap, topic, ProjectionSink(store), ConsumerOptions(group_id=f"{topic}-p"))
    consume_to_the_end(follower, bootstrap, topic)
    follower.close()

    dead = DeadLetters(store.engine)
    parked = dead.entries(PROJECTIONS)
    reasons = [p.reason for p in parked]
    assert len(parked) == 5, reasons
    assert any("not valid JSON" in r for r in reasons)
    assert any("unknown event type 'VideoRated'" in r for r in reasons)
    assert any("unknown schema version 2 of Followed" in r for r in reasons)
    assert any("invalid ConsentGranted payload" in r for r in reasons)
    assert any("projection failed on GenerationRequested" in r and "boom" in r for r in reasons)
    assert {p.raw for p in parked} >= set(poison.values())
    assert {str(v) for v in later} <= ReadModels(store.url).feed_ids()  # nothing behind the poison waited

    # Read again from the start (a new group, same database): parked once, applied once.
    again = TopicFollower(bootstrap, topic, ProjectionSink(store), ConsumerOptions(group_id=f"{topic}-again"))
    consume_to_the_end(again, bootstrap, topic)
    again.close()
    assert len(dead.entries(PROJECTIONS)) == 5

    # Nothing is fixed yet: replay changes nothing.
    results = dead.replay(PROJECTIONS, projection_replayer(store))
    assert len(results) == 5
    assert {r.status for r in results} == {"failed"}
    # The projection bug is fixed (the store without it), and the catalogue learns Followed v2.
    fixed_store = open_store(settings.projections_database)
    monkeypatch.setitem(catalogue.MODELS, ("Followed", 2), e.Followed)
    monkeypatch.setitem(catalogue.CURRENT_VERSION, "Followed", 2)
    monkeypatch.setitem(catalogue.UPCASTERS, ("Followed", 1), dict)
    results = dead.replay(PROJECTIONS, projection_replayer(fixed_store))
    assert sorted(r.status for r in results) == ["failed", "failed", "failed", "replayed", "replayed"], results
    still = dead.entries(PROJECTIONS)
    assert sorted(p.raw for p in still) == sorted([poison["not json"], poison["unknown type"], poison["bad payload"]])
    with fixed_store.engine.connect() as conn:
        audited = conn.execute(sa.select(table_of(AuditEntry).c.event_id)).scalars().all()
        boom_row = conn.execute(
            sa.select(table_of(LineageVideo).c.state).where(table_of(LineageVideo).c.video_id == str(boom))
        ).scalar_one_or_none()
    assert orjson.loads(newer_follow)["event_id"] in audited
    assert boom_row == "requested"
    replayed = [p for p in dead.entries(PROJECTIONS, include_replayed=True) if not p.pending]
    assert len(replayed) == 2
    assert {r.id for r in results if r.status == "replayed"} == {p.id for p in replayed}


def test_a_worker_parks_what_its_handler_fails_on_and_resumes_from_its_stored_position(
    settings: Settings, app: ProvenanceApp
) -> None:
    bootstrap, topic = settings.kafka_bootstrap, settings.kafka_topic
    assert bootstrap is not None
    relay = Relay(app, Positions(open_engine(settings.projections_database)), bootstrap, topic, RelayOptions())
    creator = app.register_person("frank")
    videos = [app.request_generation(creator, "explode" if n == 1 else f"clip {n}") for n in range(4)]
    relay_all(relay)
    worker_app = System(settings).app
    fixed = False
    seen: list[str] = []

    def render(event: EventEnvelope) -> None:
        """Stands for the generator: records a render for each request, with the command id workers derive."""
        seen.append(event.event_id)
        if event.event_type != "GenerationRequested":
            return
        if event.payload["prompt"] == "explode" and not fixed:
            raise RuntimeError("renderer crashed on this prompt")
        worker_app.record_render(event.stream_id, rendered(), command_id=f"render:{event.event_id}")

    options = ConsumerOptions(group_id=f"{topic}-generator", poll_timeout_ms=200)
    dead = DeadLetters(open_engine(settings.projections_database))
    with running(
        lambda stop: run_worker_consumer(System(settings), stop, "generator", render, options), "generator"
    ) as w:
        wait_for(lambda: w.check() or len(dead.entries("generator")) == 1, "the failing event to be parked")
        wait_for(lambda: len(rendered_videos(app)) == 3, "the other renders")
    [parked] = dead.entries("generator")
    assert "renderer crashed" in parked.reason
    assert str(videos[1]) not in rendered_videos(app)

    # Restarted on a topic that grew meanwhile: it resumes after its stored positions, so nothing renders twice.
    relay_all(relay)
    ends = end_offsets(bootstrap, topic)
    positions = Positions(open_engine(settings.projections_database))
    stored = {p: positions.get("generator", topic_source(topic), p) for p in ends}
    first_run = set(seen)
    seen.clear()
    extra = app.request_generation(creator, "after the restart")
    relay_all(relay)
    with running(
        lambda stop: run_worker_consumer(System(settings), stop, "generator", render, options), "generator"
    ) as w:
        wait_for(lambda: w.check() or str(extra) in rendered_videos(app), "the new request to render")
    assert any(position is not None for position in stored.values())
    assert first_run.isdisjoint(seen)  # nothing before the stored positions was handled again
    assert rendered_videos(app) == sorted(str(v) for n, v in enumerate([*videos, extra]) if n != 1)  # none twice

    fixed = True
    [result] = dead.replay("generator", handler_replayer(render))
    assert result.status == "replayed"
    assert str(videos[1]) in rendered_videos(app)
    assert dead.entries("generator") == []
    worker_app.close()
