"""The relay publishes the outbox to Kafka: every event, once, in stream order, surviving crashes and restarts."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from projections.store import open_store
from provenance.application import ProvenanceApp
from provenance.bootstrap import System
from provenance.config import Settings
from provenance.kafka.admin import TopicSpec, ensure_topic, topic_configs, topic_partitions
from provenance.kafka.client import topic_source
from provenance.kafka.consumers import ConsumerOptions, TopicFollower
from provenance.kafka.positions import Positions, open_engine
from provenance.kafka.relay import RELAY, Relay, RelayOptions
from provenance.kafka.roles import run_relay
from provenance.kafka.sinks import ProjectionSink
from provenance.log import last_position, read_log
from tests.kafka.support import (
    Background,
    Record,
    delete_topic,
    dump,
    embedded_reference,
    end_offsets,
    more_videos,
    per_stream_versions,
    read_topic,
    read_topic_with_kcat,
    record_history,
    relay_all,
    running,
    wait_for,
)
from tests.services import KafkaBroker

pytestmark = pytest.mark.kafka


class Crash(Exception):
    """Stands for the relay process dying at a chosen point."""


def assert_exactly_the_log(app: ProvenanceApp, records: list[Record]) -> None:
    """Each recorded event once, keyed by its stream, each stream's versions in order on one partition."""
    log = read_log(app, 0, 100_000)
    assert sorted(r.value["event_id"] for r in records) == sorted(e.event_id for e in log)
    assert len({(r.key, r.partition) for r in records}) == len({r.key for r in records})
    expected: dict[str, list[int]] = {}
    for event in log:
        expected.setdefault(event.stream_id, []).append(event.stream_version)
    assert per_stream_versions(records) == expected
    by_id = {e.event_id: e for e in log}
    for record in records:
        event = by_id[record.value["event_id"]]
        assert record.key == event.stream_id
        assert record.value == event.to_dict()
        assert record.headers == {
            "event_type": event.event_type,
            "schema_version": str(event.schema_version),
            "event_id": event.event_id,
            "stream_type": event.stream_type,
        }


def test_every_event_is_published_once_in_stream_order(settings: Settings, app: ProvenanceApp, kcat_path: str) -> None:
    record_history(app)
    total = last_position(app)
    topic = f"{settings.kafka_topic}-relayed"  # created by the relay itself
    relayed = replace(settings, kafka_topic=topic)
    bootstrap = settings.kafka_bootstrap
    assert bootstrap is not None

    positions = Positions(open_engine(settings.projections_database))
    try:
        options = RelayOptions(partitions=4, batch_size=25)
        with running(lambda stop: run_relay(System(relayed), stop, options), "relay") as relay:
            wait_for(lambda: relay.check() or (positions.get(RELAY, topic_source(topic)) or 0) >= total, "the relay")
        partitions = topic_partitions(bootstrap, topic)
        configs = topic_configs(bootstrap, topic)
        from_python = read_topic(bootstrap, topic, total)
        from_kcat = read_topic_with_kcat(kcat_path, bootstrap, topic)
    finally:
        delete_topic(bootstrap, topic)

    assert partitions == 4
    assert (configs["retention.ms"], configs["retention.bytes"]) == ("-1", "-1")
    assert len(from_python) == total
    assert_exactly_the_log(app, from_python)
    assert from_kcat == from_python
    assert len({r.partition for r in from_python}) > 1


def test_a_crash_after_the_ack_resends_the_batch_and_the_read_models_stay_exact(
    settings: Settings, app: ProvenanceApp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    record_history(app)
    bootstrap, topic = settings.kafka_bootstrap, settings.kafka_topic
    assert bootstrap is not None
    positions = Positions(open_engine(settings.projections_database))
    options = RelayOptions(batch_size=20, partitions=3)
    first = Relay(app, positions, bootstrap, topic, options)
    assert first.relay_batch() == 20

    stored = Positions.set

    def die_after_the_ack(self: Positions, *args: object) -> None:
        raise Crash("killed after the broker acknowledged the batch, before the position was stored")

    monkeypatch.setattr(Positions, "set", die_after_the_ack)
    with pytest.raises(Crash):
        first.relay_batch()
    first.discard_producer()
    monkeypatch.setattr(Positions, "set", stored)
    assert positions.get(RELAY, topic_source(topic)) == 20

    second = Relay(app, positions, bootstrap, topic, options)
    relay_all(second)
    total = last_position(app)
    assert positions.get(RELAY, topic_source(topic)) == total
    records = read_topic(bootstrap, topic, total + 20)
    assert len(records) == total + 20  # the unrecorded batch went out twice: at-least-once
    assert sorted({r.value["event_id"] for r in records}) == sorted(e.event_id for e in read_log(app, 0, 10_000))
    for versions in per_stream_versions(records).values():
        first_seen = list(dict.fromkeys(versions))
        assert first_seen == list(range(1, len(first_seen) + 1))  # a resend never lets a version overtake another

    # Consumers skip versions they already applied: the duplicates change nothing.
    from_topic = open_store(f"sqlite:///{tmp_path / 'from-topic.db'}")
    follower = TopicFollower(bootstrap, topic, ProjectionSink(from_topic), ConsumerOptions(group_id=f"{topic}-p"))
    ends = end_offsets(bootstrap, topic)
    wait_for(
        lambda: (
            follower.poll_once() >= 0
            and all(follower.sink.resume_position(topic_source(topic), p) == end - 1 for p, end in ends.items() if end)
        ),
        "the projections to catch up",
    )
    follower.close()
    reference = open_store(f"sqlite:///{tmp_path / 'embedded.db'}")
    embedded_reference(app, reference)
    assert dump(from_topic) == dump(reference)


def test_a_second_relay_stands_by_and_takes_over_when_the_first_stops(settings: Settings, app: ProvenanceApp) -> None:
    """Two relay processes on one outbox: one publishes, the other waits on the lease; nothing goes out twice."""
    record_history(app)
    bootstrap, topic = settings.kafka_bootstrap, settings.kafka_topic
    assert bootstrap is not None
    positions = Positions(open_engine(settings.projections_database))
    options = RelayOptions(partitions=3, batch_size=10, standby_wait_s=0.1)

    def relayed_up_to(position: int) -> Callable[[], bool]:
        return lambda: (positions.get(RELAY, topic_source(topic)) or 0) >= position

    active = Background(lambda stop: run_relay(System(settings), stop, options), "relay-a").start()
    try:
        wait_for(lambda: active.check() or relayed_up_to(last_position(app))(), "the first relay")
        with running(lambda stop: run_relay(System(settings), stop, options), "relay-b") as standby:
            for round_no in range(3):  # both run: every new event must still go out once
                more_videos(app, f"both-{round_no}", 2)
                wait_for(lambda: standby.check() or relayed_up_to(last_position(app))(), "the active relay")
            active.finish()
            more_videos(app, "after", 3)  # only the standby is left to publish these
            wait_for(lambda: standby.check() or relayed_up_to(last_position(app))(), "the standby taking over")
    finally:
        if active.thread.is_alive():
            active.finish()
    total = last_position(app)
    assert sum(end_offsets(bootstrap, topic).values()) == total  # not one message more than there are events
    assert_exactly_the_log(app, read_topic(bootstrap, topic, total))


@pytest.mark.slow
def test_a_broker_restart_during_the_relay_loses_nothing(
    kafka_broker: KafkaBroker, tmp_path: Path, fresh_kafka_topic: str
) -> None:
    settings = Settings(
        home=tmp_path / "home",
        event_store="sqlite",
        kafka_bootstrap=kafka_broker.bootstrap,
        kafka_topic=fresh_kafka_topic,
    )
    relaying = System(settings)
    writer = System(settings).app
    positions = Positions(open_engine(settings.projections_database))
    source = topic_source(fresh_kafka_topic)
    # A short delivery timeout makes the restart fail whole batches, so the resend path is taken too.
    options = RelayOptions(
        batch_size=10,
        partitions=3,
        delivery_timeout_ms=4_000,
        request_timeout_ms=2_000,
        max_block_ms=2_000,
        flush_grace_s=3.0,
        backoff_initial_s=0.2,
        backoff_max_s=1.0,
    )
    writing = threading.Event()

    def keep_writing(stop: threading.Event) -> None:
        n = 0
        while not stop.is_set():
            if writing.is_set():
                more_videos(writer, f"writer{n}", 2)
                n += 1
            stop.wait(0.05)

    with (
        running(lambda stop: run_relay(relaying, stop, options), "relay") as relay,
        running(keep_writing, "writer") as writes,
    ):
        record_history(writer)
        wait_for(lambda: relay.check() or (positions.get(RELAY, source) or 0) >= last_position(writer), "a first batch")
        relayed_before = positions.get(RELAY, source) or 0
        writing.set()
        wait_for(lambda: (positions.get(RELAY, source) or 0) > relayed_before + 20, "events relayed while writing")
        kafka_broker.stop()
        before_restart = last_position(writer)
        wait_for(lambda: last_position(writer) > before_restart + 30, "events written while the broker is down")
        kafka_broker.start()
        wait_for(lambda: last_position(writer) > before_restart + 60, "events written after the restart")
        writing.clear()
        writes.check()
        wait_for(
            lambda: relay.check() or (positions.get(RELAY, source) or 0) >= last_position(writer),
            "the relay to catch up after the restart",
            deadline_s=90,
        )

    total = last_position(writer)
    records = read_topic(kafka_broker.bootstrap, fresh_kafka_topic, total)
    assert {r.value["event_id"] for r in records} == {e.event_id for e in read_log(writer, 0, 100_000)}
    for versions in per_stream_versions(records).values():
        first_seen = list(dict.fromkeys(versions))
        assert first_seen == list(range(1, len(first_seen) + 1))
    writer.close()
    relaying.close()


def test_an_existing_topic_is_kept_as_it_is(settings: Settings) -> None:
    bootstrap = settings.kafka_bootstrap
    assert bootstrap is not None
    state = ensure_topic(bootstrap, TopicSpec(settings.kafka_topic, partitions=6))
    assert not state.created
    assert state.partitions == 3  # the fixture made it with three; the relay never repartitions a log
