"""Projections fed from Kafka: exact after a crash mid-batch, across a rebalance, and equal to the embedded ones."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
from sqlalchemy.engine import Connection

from projections.framework import Projection, ProjectionStore
from projections.store import all_projections, open_store
from provenance.application import ProvenanceApp
from provenance.bootstrap import System
from provenance.config import Settings
from provenance.kafka.client import topic_source
from provenance.kafka.consumers import ConsumerOptions, TopicFollower
from provenance.kafka.positions import Positions, open_engine
from provenance.kafka.relay import Relay, RelayOptions
from provenance.kafka.roles import run_projection_consumer, run_relay
from provenance.kafka.sinks import ProjectionSink
from schemas.envelope import EventEnvelope
from tests.kafka.support import (
    DEADLINE_S,
    dump,
    embedded_reference,
    end_offsets,
    more_videos,
    record_history,
    relay_all,
    running,
    wait_for,
)

pytestmark = pytest.mark.kafka


class Killed(BaseException):
    """The process dying: not an error any handler may catch and carry on from."""


class DiesOnTheThirdBatch(Projection):
    """Wraps a projection: applies the batch (rows written, transaction open), then the process dies."""

    def __init__(self, inner: Projection) -> None:
        self.inner = inner
        self.name, self.tables, self.event_types = inner.name, inner.tables, inner.event_types
        self.calls = 0

    def apply(self, events: Sequence[EventEnvelope], conn: Connection) -> None:
        self.inner.apply(events, conn)
        self.calls += 1
        if self.calls >= 3 and len(events) > 1:  # the first multi-event batch from the third on
            raise Killed("killed after writing rows, before the commit")


def caught_up(store: ProjectionStore, bootstrap: str, topic: str) -> bool:
    sink = ProjectionSink(store)
    return all(
        sink.resume_position(topic_source(topic), p) == end - 1
        for p, end in end_offsets(bootstrap, topic).items()
        if end
    )


def relay_everything(app: ProvenanceApp, settings: Settings) -> None:
    assert settings.kafka_bootstrap is not None
    positions = Positions(open_engine(settings.projections_database))
    relay_all(Relay(app, positions, settings.kafka_bootstrap, settings.kafka_topic, RelayOptions(partitions=3)))


def test_a_consumer_killed_mid_batch_and_restarted_duplicates_nothing(
    settings: Settings, app: ProvenanceApp, fresh_postgres_db: str, tmp_path: Path
) -> None:
    record_history(app, videos=8)
    relay_everything(app, settings)
    bootstrap, topic = settings.kafka_bootstrap, settings.kafka_topic
    assert bootstrap is not None
    options = ConsumerOptions(group_id=f"{topic}-projections", max_poll_records=15)

    projections = [DiesOnTheThirdBatch(p) if p.name == "audit" else p for p in all_projections()]
    dying = ProjectionStore(fresh_postgres_db, projections)
    follower = TopicFollower(bootstrap, topic, ProjectionSink(dying), options)
    with pytest.raises(Killed):
        for _ in range(200):
            follower.poll_once()
    follower.close()
    dying.engine.dispose()

    store = open_store(fresh_postgres_db)
    before_restart = {p: ProjectionSink(store).resume_position(topic_source(topic), p) for p in range(3)}
    assert any(position is not None for position in before_restart.values())  # it died part way through
    assert not caught_up(store, bootstrap, topic)
    restarted = TopicFollower(bootstrap, topic, ProjectionSink(store), options)
    wait_for(lambda: restarted.poll_once() >= 0 and caught_up(store, bootstrap, topic), "the restarted consumer")
    restarted.close()

    reference = open_store(f"sqlite:///{tmp_path / 'embedded.db'}")
    embedded_reference(app, reference)
    assert dump(store) == dump(reference)


def test_two_consumers_split_the_partitions_and_a_rebalance_loses_nothing(
    settings: Settings, app: ProvenanceApp, fresh_postgres_db: str, tmp_path: Path
) -> None:
    bootstrap, topic = settings.kafka_bootstrap, settings.kafka_topic
    assert bootstrap is not None
    options = ConsumerOptions(group_id=f"{topic}-projections", max_poll_records=10, poll_timeout_ms=200)
    stores = [open_store(fresh_postgres_db), open_store(fresh_postgres_db)]
    followers = [TopicFollower(bootstrap, topic, ProjectionSink(s), options) for s in stores]
    writer = System(settings).app
    relay = Relay(writer, Positions(open_engine(settings.projections_database)), bootstrap, topic)

    with running(followers[0].run, "consumer A") as a:
        wait_for(lambda: followers[0].assignment() == {0, 1, 2}, "A to own every partition")
        with running(followers[1].run, "consumer B") as b:

            def split() -> bool:
                """Both own partitions, none twice, all covered (a member may report a stale set mid-rebalance)."""
                mine, theirs = followers[0].assignment(), followers[1].assignment()
                return bool(mine) and bool(theirs) and mine.isdisjoint(theirs) and mine | theirs == {0, 1, 2}

            # A member whose heartbeats a loaded machine delayed past its session is dropped and joins again, which
            # takes the group another rebalance or two: the split is awaited longer than one.
            wait_for(lambda: a.check() or b.check() or split(), "the group to split the partitions", 3 * DEADLINE_S)
            record_history(writer, videos=6)
            relay_all(relay)
            wait_for(lambda: followers[0].handled > 0 and followers[1].handled > 0, "both to do some of the work")
        # B left the group: A takes its partitions over from the positions B stored, and more keeps coming.
        more_videos(writer, "late", 10)
        relay_all(relay)
        wait_for(lambda: a.check() or followers[0].assignment() == {0, 1, 2}, "A to take over every partition")
        wait_for(lambda: caught_up(stores[0], bootstrap, topic), "A to catch up")

    reference = open_store(f"sqlite:///{tmp_path / 'embedded.db'}")
    embedded_reference(writer, reference)
    assert dump(stores[0]) == dump(reference)
    writer.close()


def test_projections_rebuilt_from_the_topic_equal_the_embedded_ones(
    settings: Settings, system: System, app: ProvenanceApp, tmp_path: Path
) -> None:
    record_history(app, videos=5)
    more_videos(app, "carol", 4)
    bootstrap, topic = settings.kafka_bootstrap, settings.kafka_topic
    assert bootstrap is not None
    live = open_store(f"sqlite:///{tmp_path / 'embedded.db'}")
    embedded_reference(app, live)
    from_topic = open_store(settings.projections_database)
    group = ConsumerOptions(group_id=f"{topic}-projections", poll_timeout_ms=200)

    with running(lambda stop: run_relay(system, stop, RelayOptions(partitions=3)), "relay"):
        with running(lambda stop: run_projection_consumer(system, stop, group, store=from_topic), "projections"):
            wait_for(lambda: caught_up(from_topic, bootstrap, topic) and dump(from_topic) == dump(live), "the consumer")
        assert dump(from_topic) == dump(live)

        # Dropped and rebuilt: the database holds the positions, so the same group reads the topic again.
        from_topic.reset(list(from_topic.projections))
        assert dump(from_topic) != dump(live)
        with running(lambda stop: run_projection_consumer(system, stop, group, store=from_topic), "rebuild"):
            wait_for(lambda: caught_up(from_topic, bootstrap, topic), "the rebuild")
    assert dump(from_topic) == dump(live)
