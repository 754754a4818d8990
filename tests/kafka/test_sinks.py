"""Sinks and dead letters without a broker: what is parked, what is retried, what replay does."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import orjson
import pytest
import sqlalchemy as sa
import sqlalchemy.exc as sa_exc
from eventsourcing.persistence import OperationalError as StoreDown
from sqlalchemy.engine import Connection

from kernel.errors import InvalidInput
from projections.framework import Projection, ProjectionStore
from projections.queries import ReadModels
from projections.store import all_projections, open_store
from provenance.application import ProvenanceApp
from provenance.bootstrap import System
from provenance.config import Settings
from provenance.kafka.dead_letters import DeadLetters, decode, handler_replayer, projection_replayer
from provenance.kafka.errors import ParkedEventNotFound, TransientFailure, is_transient
from provenance.kafka.positions import Positions
from provenance.kafka.roles import list_parked, replay_parked
from provenance.kafka.sinks import HandlerSink, Message, ProjectionSink
from provenance.log import read_log
from schemas.catalogue import InvalidEvent
from schemas.envelope import EventEnvelope
from tests.core.support import publish_new, rendered

SOURCE = "kafka:events"


@pytest.fixture
def app(tmp_path: Path) -> Iterator[ProvenanceApp]:
    application = System(Settings(home=tmp_path / "home", event_store="memory")).app
    yield application
    application.close()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ProjectionStore]:
    projection_store = open_store(f"sqlite:///{tmp_path / 'projections.db'}")
    yield projection_store
    projection_store.engine.dispose()


def messages_of(events: list[EventEnvelope], start: int = 0) -> list[Message]:
    return [Message(start + n, e.to_json()) for n, e in enumerate(events)]


def audit_rows(store: ProjectionStore) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(sa.text("SELECT count(*) FROM audit_events")).scalar_one())


def test_poison_is_parked_once_and_the_checkpoint_moves_past_it(app: ProvenanceApp, store: ProjectionStore) -> None:
    publish_new(app, app.register_person("amy"), seed=1)
    events = read_log(app, 0, 100)
    batch = [*messages_of(events), Message(len(events), b"\x00garbage"), Message(len(events) + 1, None)]
    sink = ProjectionSink(store)

    first = sink.apply({0: batch}, SOURCE)
    again = sink.apply({0: batch}, SOURCE)  # a redelivery after a crash before the offsets reached Kafka

    assert (first.handled, first.parked) == (len(events), 2)
    assert (again.handled, again.parked) == (len(events), 0)  # handed to the store, which skips them all
    assert audit_rows(store) == len(events)
    parked = DeadLetters(store.engine).entries("projections")
    assert [(p.position, p.raw) for p in parked] == [(len(events), b"\x00garbage"), (len(events) + 1, b"")]
    assert "not valid JSON" in parked[0].reason and "empty message" in parked[1].reason
    assert sink.resume_position(SOURCE, 0) == len(events) + 1  # the poison tail counts as processed


def test_a_database_outage_parks_nothing_and_keeps_the_position_of_the_last_handled_event(
    app: ProvenanceApp, store: ProjectionStore
) -> None:
    publish_new(app, app.register_person("ben"), seed=2)
    events = read_log(app, 0, 100)
    handled: list[str] = []

    def handler(event: EventEnvelope) -> None:
        if len(handled) == 2:
            raise sa_exc.OperationalError("SELECT 1", {}, ConnectionRefusedError("the database is restarting"))
        handled.append(event.event_id)

    sink = HandlerSink("moderation", Positions(store.engine), handler)
    with pytest.raises(TransientFailure, match="moderation could not reach a store"):
        sink.apply({3: messages_of(events, start=10)}, SOURCE)
    assert sink.resume_position(SOURCE, 3) == 11
    assert DeadLetters(store.engine).entries() == []


def test_failures_of_the_infrastructure_are_transient_and_bugs_are_not() -> None:
    wrapped = sa_exc.OperationalError("UPDATE x", {}, Exception("server closed the connection"))
    assert is_transient(wrapped)
    assert is_transient(StoreDown("could not connect"))
    try:
        try:
            raise ConnectionResetError("reset by peer")
        except ConnectionResetError as exc:
            raise RuntimeError("the command failed") from exc
    except RuntimeError as chained:
        assert is_transient(chained)
    assert not is_transient(KeyError("video_id"))
    assert not is_transient(sa_exc.IntegrityError("INSERT", {}, Exception("duplicate key")))


def test_a_statement_the_database_refuses_for_good_is_the_events_fault_not_an_outage() -> None:
    import psycopg.errors as pg

    def raised(driver_error: Exception) -> sa_exc.OperationalError:
        try:
            raise sa_exc.OperationalError("INSERT", {}, driver_error) from driver_error
        except sa_exc.OperationalError as exc:
            return exc

    # PostgreSQL files an index row past its size under OperationalError: it would be retried for ever
    assert not is_transient(raised(pg.ProgramLimitExceeded("index row requires 16016 bytes")))
    assert is_transient(raised(pg.AdminShutdown("terminating connection due to administrator command")))
    assert is_transient(raised(pg.DeadlockDetected("deadlock detected")))
    assert is_transient(raised(pg.OperationalError("connection refused")))  # no answer from a server at all


def test_a_malformed_messages_event_id_is_parked_as_printable_text(store: ProjectionStore) -> None:
    raw = orjson.dumps({"event_id": "\u0000" + "x" * 500, "event_type": "NoSuchEvent"})
    ProjectionSink(store).apply({0: [Message(7, raw)]}, SOURCE)
    (parked,) = DeadLetters(store.engine).entries()
    assert parked.event_id is not None and parked.event_id.isprintable() and len(parked.event_id) <= 100
    assert parked.raw == raw  # the message itself is kept whole


def test_a_read_model_server_that_cannot_be_reached_is_an_outage_not_a_bug(tmp_path: Path) -> None:
    """The read side queries through the drivers themselves: their failures are outages too (exit 7, HTTP 503)."""
    with pytest.raises(Exception) as unreachable:
        ReadModels("postgresql://provenance@127.0.0.1:1/projections").feed()
    assert is_transient(unreachable.value)
    missing = tmp_path / "no-such-directory" / "projections.db"
    with pytest.raises(Exception) as unopenable:
        ReadModels(f"sqlite:///{missing}").feed()
    assert is_transient(unopenable.value)
    assert not missing.exists()  # reading never creates a database


def raw_event(event_type: str, version: int, payload: dict[str, object]) -> bytes:
    return orjson.dumps(
        {
            "event_id": "e",
            "stream_type": "video",
            "stream_id": "s",
            "stream_version": 1,
            "event_type": event_type,
            "schema_version": version,
            "occurred_at": "2026-01-01T00:00:00+00:00",
            "actor": "a",
            "payload": payload,
        }
    )


def test_decode_checks_the_envelope_and_payload_and_upcasts() -> None:
    with pytest.raises(InvalidEvent, match="malformed event envelope"):
        decode(orjson.dumps({"event_type": "VideoPublished"}))
    with pytest.raises(InvalidEvent, match="invalid VideoPublished payload"):
        decode(raw_event("VideoPublished", 1, {"consent_checked": "not a list"}))
    v2_only = {"frame_count", "video_codec", "audio_codec", "seed", "render_seconds"}
    v1 = {k: v for k, v in rendered().model_dump(mode="json").items() if k not in v2_only}
    upcast = decode(raw_event("VideoRendered", 1, v1), position=5)
    assert (upcast.schema_version, upcast.position) == (2, 5)
    assert upcast.payload["frame_count"] == 48 and upcast.payload["seed"] is None


def test_replay_refuses_other_consumers_events_and_unknown_ids(store: ProjectionStore) -> None:
    dead = DeadLetters(store.engine)
    dead.park("signing", SOURCE, 0, 7, b"{}", "line one\nline two " + "x" * 5000)
    [parked] = dead.entries("signing")
    assert "\n" not in parked.reason and len(parked.reason) <= 2000
    [result] = dead.replay("moderation", handler_replayer(lambda e: None), ids=[parked.id])
    assert (result.status, result.detail) == ("failed", "parked by signing, not moderation")
    with pytest.raises(ParkedEventNotFound):
        dead.replay("signing", handler_replayer(lambda e: None), ids=[parked.id + 1000])
    assert dead.entries("signing") == [parked]


def test_a_parked_event_whose_stream_moved_on_is_reported_superseded(
    app: ProvenanceApp, store: ProjectionStore
) -> None:
    video = app.request_generation(app.register_person("cat"), "a clip", seed=3)
    events = read_log(app, 0, 100)
    requested = next(e for e in events if e.stream_id == str(video))
    dead = DeadLetters(store.engine)
    dead.park("projections", SOURCE, 0, 0, requested.to_json(), "projection failed (a bug since fixed)")
    later = app.block(video, "moderation", ["blocked for the test"], command_id="block")
    assert later
    newer = [e for e in read_log(app, 0, 100) if e.stream_id == str(video) and e.stream_version > 1]
    store.process(newer, SOURCE, 0)

    [result] = dead.replay("projections", projection_replayer(store))
    assert result.status == "superseded"
    assert [p.pending for p in dead.entries("projections", include_replayed=True)] == [True]


class FailsOnPublish(Projection):
    """A projection with a bug that one event type triggers."""

    def __init__(self, inner: Projection) -> None:
        self.inner = inner
        self.name, self.tables, self.event_types = inner.name, inner.tables, inner.event_types

    def apply(self, events: Sequence[EventEnvelope], conn: Connection) -> None:
        if any(e.event_type == "VideoPublished" for e in events):
            raise ZeroDivisionError("bug")
        self.inner.apply(events, conn)


def test_embedded_batches_park_what_a_projection_fails_on_and_replay_through_the_settings(
    app: ProvenanceApp, tmp_path: Path
) -> None:
    video = publish_new(app, app.register_person("dan"), seed=4)
    events = read_log(app, 0, 100)
    url = f"sqlite:///{tmp_path / 'read.db'}"
    broken = ProjectionStore(url, [FailsOnPublish(p) if p.name == "feed" else p for p in all_projections()])

    result = ProjectionSink(broken).apply_envelopes(events, "log", 0)

    assert (result.handled, result.parked) == (len(events) - 1, 1)
    assert ProjectionSink(broken).resume_position("log", 0) == events[-1].position
    settings = Settings(home=tmp_path, projections_url=url)
    [parked] = list_parked(System(settings), "projections")
    assert parked.event_id == next(e.event_id for e in events if e.event_type == "VideoPublished")
    assert EventEnvelope.from_json(parked.raw) == next(e for e in events if e.event_type == "VideoPublished")
    assert str(video) not in ReadModels(broken.url).feed_ids()

    [result_of_replay] = replay_parked(System(settings), "projections")  # the store the settings open has no bug
    assert result_of_replay.status == "replayed"
    assert str(video) in ReadModels(broken.url).feed_ids()
    assert list_parked(System(settings)) == []
    with pytest.raises(InvalidInput, match="needs its handler"):
        replay_parked(System(settings), "signing")


def two_videos_by_partition(app: ProvenanceApp) -> tuple[list[str], dict[int, list[Message]]]:
    """Two published videos, and the log as a keyed producer spreads it: each video's stream on a partition of
    its own (0 and 1), every other stream on partition 2; offsets count per partition."""
    creator = app.register_person("amy")
    streams = [str(publish_new(app, creator, seed=n)) for n in (5, 6)]
    spread: dict[int, list[EventEnvelope]] = {}
    for event in read_log(app, 0, 1000):
        partition = streams.index(event.stream_id) if event.stream_id in streams else len(streams)
        spread.setdefault(partition, []).append(event)
    return streams, {partition: messages_of(events) for partition, events in spread.items()}


def test_a_poll_of_several_partitions_is_applied_in_one_pair_of_transactions(
    app: ProvenanceApp, store: ProjectionStore
) -> None:
    videos, polled = two_videos_by_partition(app)
    sink = ProjectionSink(store)
    commits: list[bool] = []
    sa.event.listen(store.engine, "commit", lambda _: commits.append(True))

    result = sink.apply(polled, SOURCE)

    assert len(polled) == 3 and len(commits) == 2  # the feed's transaction, then every other projection's
    assert (result.handled, result.parked) == (sum(len(m) for m in polled.values()), 0)
    assert set(videos) <= ReadModels(store.url).feed_ids()
    assert {p: sink.resume_position(SOURCE, p) for p in polled} == {p: len(m) - 1 for p, m in polled.items()}
    again = sink.apply(polled, SOURCE)  # redelivered: skipped by each partition's checkpoint
    assert again.handled == result.handled and audit_rows(store) == result.handled


def test_a_bug_in_a_poll_of_several_partitions_parks_only_the_events_it_fails_on(
    app: ProvenanceApp, tmp_path: Path
) -> None:
    videos, polled = two_videos_by_partition(app)
    polled[2].append(Message(len(polled[2]), b"\x00garbage"))
    broken = ProjectionStore(
        f"sqlite:///{tmp_path / 'read.db'}",
        [FailsOnPublish(p) if p.name == "feed" else p for p in all_projections()],
    )

    result = ProjectionSink(broken).apply(polled, SOURCE)

    events = sum(len(m) for m in polled.values()) - 1
    assert (result.handled, result.parked) == (events - 2, 3)  # both publications, and the garbage
    parked = DeadLetters(broken.engine).entries("projections")
    assert sorted(p.partition for p in parked) == [0, 1, 2]
    assert not set(videos) & ReadModels(broken.url).feed_ids()
    sink = ProjectionSink(broken)
    assert {p: sink.resume_position(SOURCE, p) for p in polled} == {p: len(m) - 1 for p, m in polled.items()}
    with broken.engine.connect() as conn:  # every event up to the publications was applied
        signed = conn.execute(sa.text("SELECT count(*) FROM lineage_videos WHERE state = 'signed'"))
        assert signed.scalar_one() == 2


def test_an_event_another_projection_than_the_feed_failed_on_is_replayed(app: ProvenanceApp, tmp_path: Path) -> None:
    """The feed commits ahead of the others: it holds the event already when the replay comes."""
    video = publish_new(app, app.register_person("dan"), seed=4)
    url = f"sqlite:///{tmp_path / 'read.db'}"
    broken = ProjectionStore(url, [FailsOnPublish(p) if p.name == "lineage" else p for p in all_projections()])
    ProjectionSink(broken).apply_envelopes(read_log(app, 0, 100), "log", 0)
    assert str(video) in ReadModels(url).feed_ids()  # the feed went ahead

    fixed = open_store(url)
    [outcome] = DeadLetters(fixed.engine).replay("projections", projection_replayer(fixed))
    assert outcome.status == "replayed", outcome
    assert ReadModels(url).video(str(video))["state"] == "published"
    assert DeadLetters(fixed.engine).entries("projections") == []
