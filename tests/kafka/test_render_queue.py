"""The render queue of the distributed mode: fair between creators, shared by replicas, safe when a worker dies."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID

import pytest
import sqlalchemy as sa

from kernel.errors import InfrastructureFailure
from provenance.bootstrap import System
from provenance.config import Settings
from provenance.kafka.errors import TransientFailure
from provenance.kafka.relay import RelayOptions
from provenance.kafka.roles import run_generator, run_relay
from provenance.keystore import KeyMissing
from provenance.log import read_log
from provenance.render_queue import Claim, RenderQueue, serve_renders
from schemas.envelope import EventEnvelope
from tests.kafka.support import running, wait_for

UNIT = {"width": 64, "height": 64, "fps": 1, "duration_s": 1.0}
"""A request of cost 4,096 pixel-frames."""


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        self.now += 0.001  # every call a little later, so insertion order is also time order
        return self.now


@pytest.fixture(params=["sqlite", "postgres"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sa.Engine]:
    sqlite = f"sqlite:///{tmp_path / 'queue.db'}"
    url = sqlite if request.param == "sqlite" else request.getfixturevalue("fresh_postgres_db")
    built = sa.create_engine(url)
    yield built
    built.dispose()


def requested(creator: str, scale: int = 1) -> EventEnvelope:
    video = str(uuid.uuid4())
    return EventEnvelope(
        event_id=str(uuid.uuid4()),
        stream_type="video",
        stream_id=video,
        stream_version=1,
        event_type="GenerationRequested",
        schema_version=1,
        occurred_at=datetime.now(UTC),
        actor=creator,
        payload={"creator_id": creator, "parameters": {**UNIT, "duration_s": float(scale)}, "prompt": "p", "seed": 1},
    )


def serving_order(queue: RenderQueue, count: int) -> list[str]:
    """Creators in the order workers take their requests, each finished before the next is taken."""
    order = []
    for _ in range(count):
        claim = queue.claim("w")
        assert claim is not None
        order.append(claim.creator_id)
        queue.finish(claim)
    return order


def test_one_creators_backlog_does_not_hold_up_the_others(engine: sa.Engine) -> None:
    queue = RenderQueue(engine, clock=Clock())
    for _ in range(6):
        queue.add(requested("bulk"))
    queue.add(requested("bob"))
    queue.add(requested("carol"))
    order = serving_order(queue, 8)
    # First come, first served would make bob and carol wait for all six.
    assert set(order[:3]) == {"bulk", "bob", "carol"}
    assert queue.claim("w") is None


def test_bigger_requests_get_proportionally_fewer_turns(engine: sa.Engine) -> None:
    queue = RenderQueue(engine, clock=Clock())
    for _ in range(3):
        queue.add(requested("big", scale=4))
    for _ in range(8):
        queue.add(requested("small"))
    assert serving_order(queue, 11) == ["big"] + ["small"] * 4 + ["big"] + ["small"] * 4 + ["big"]


def test_time_away_earns_no_credit(engine: sa.Engine) -> None:
    queue = RenderQueue(engine, clock=Clock())
    for _ in range(8):
        queue.add(requested("steady"))
    serving_order(queue, 8)
    # "away" asked for nothing while "steady" was served; coming back with five requests it gets its turn,
    # not five turns in a row ahead of "steady".
    for _ in range(5):
        queue.add(requested("away"))
    queue.add(requested("steady"))
    assert serving_order(queue, 6)[:2] == ["away", "steady"]


def test_a_redelivered_request_is_queued_once(engine: sa.Engine) -> None:
    queue = RenderQueue(engine, clock=Clock())
    event = requested("alice")
    assert queue.add(event) is True
    assert queue.add(event) is False
    assert [w.video_id for w in queue.waiting()] == [event.stream_id]


def test_a_dead_workers_request_is_taken_again_and_given_up_after_max_attempts(engine: sa.Engine) -> None:
    clock = Clock()
    queue = RenderQueue(engine, lease_s=10, max_attempts=2, clock=clock)
    event = requested("alice")
    queue.add(event)
    first = queue.claim("w1")
    assert first is not None and first.attempts == 1
    assert queue.claim("w2") is None  # held while its lease runs
    clock.now += 11  # w1 died: its lease lapses
    second = queue.claim("w2")
    assert second is not None and second.attempts == 2 and second.event == event
    assert not queue.renew(first)  # w1 is told it lost the request
    clock.now += 11
    rendered: list[str] = []
    given_up: list[Claim] = []
    stop = threading.Event()

    def give_up(claim: Claim) -> None:
        given_up.append(claim)
        stop.set()

    serve_renders(queue, lambda e: rendered.append(e.stream_id), give_up, stop, idle_s=0.01)
    assert rendered == [] and [c.video_id for c in given_up] == [event.stream_id]
    assert queue.waiting() == []


def test_a_transient_failure_puts_the_request_back_without_counting_an_attempt(engine: sa.Engine) -> None:
    queue = RenderQueue(engine, max_attempts=1, clock=Clock())
    event = requested("alice")
    queue.add(event)
    calls: list[int] = []
    stop = threading.Event()

    def render(_: EventEnvelope) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise TransientFailure("the event store is restarting")
        stop.set()

    serve_renders(queue, render, lambda c: pytest.fail(f"gave up {c}"), stop, idle_s=0.01)
    assert len(calls) == 2 and queue.waiting() == []


def test_the_generator_role_renders_a_late_creator_before_an_earlier_backlog(settings: Settings) -> None:
    system = System(settings)
    app = system.app
    bulk, late = app.register_person("bulk"), app.register_person("late")
    small = {"duration_s": 0.5, "fps": 8, "width": 64, "height": 64}
    backlog = [app.request_generation(bulk, f"bulk clip {n}", parameters=small) for n in range(4)]
    mine = app.request_generation(late, "late clip", parameters=small)

    with (
        # One partition: the consumer meets the requests in the order they were made, the backlog first.
        running(lambda stop: run_relay(System(settings), stop, RelayOptions(partitions=1)), "relay"),
        running(lambda stop: run_generator(System(settings), stop, partitions=1), "generator") as generator,
    ):
        everything = [*backlog, mine]
        wait_for(lambda: generator.check() or all(app.video(v).state == "rendered" for v in everything), "renders")
    order = [UUID(e.stream_id) for e in read_log(app, 0, 10_000) if e.event_type == "VideoRendered"]
    assert sorted(order) == sorted(everything)
    assert order.index(mine) <= 2, "the late creator waited behind the whole backlog"
    system.close()


@pytest.mark.parametrize(
    "failure",
    [
        InfrastructureFailure("model weights in /models do not load"),
        KeyMissing("the key store is not mounted"),
        PermissionError(13, "Permission denied", "/models/weights.safetensors"),
    ],
    ids=["weights", "key-store", "os-error"],
)
def test_an_infrastructure_failure_gives_the_request_back_and_is_never_recorded(
    engine: sa.Engine, failure: Exception
) -> None:
    """A setup that is broken for a while (no weights, no key store) stops the role and leaves the request
    untried: restarts of the role never add up to giving it up, however many there are."""
    clock = Clock()
    queue = RenderQueue(engine, max_attempts=2, clock=clock)
    event = requested("alice")
    queue.add(event)

    def broken(_: EventEnvelope) -> None:
        raise failure

    for _ in range(5):  # more role restarts than max_attempts
        stop = threading.Event()
        with pytest.raises(type(failure)):
            serve_renders(queue, broken, lambda c: pytest.fail(f"gave up {c}"), stop, idle_s=0.01)
        # given back at once: not held until its lease lapses, and no attempt counted
        assert [(w.video_id, w.worker) for w in queue.waiting()] == [(event.stream_id, None)]
    claim = queue.claim("w")
    assert claim is not None and claim.attempts == 1


def test_a_finish_after_a_lapsed_lease_leaves_the_new_holders_claim(engine: sa.Engine) -> None:
    clock = Clock()
    queue = RenderQueue(engine, lease_s=10, clock=clock)
    event = requested("alice")
    queue.add(event)
    first = queue.claim("w1")
    assert first is not None
    clock.now += 11  # w1's lease lapses while it still renders
    second = queue.claim("w2")
    assert second is not None
    queue.finish(first)  # w1 completes late
    queue.release(first)
    assert [(w.video_id, w.worker) for w in queue.waiting()] == [(event.stream_id, "w2")]
    assert queue.renew(second)
    assert queue.claim("w3") is None  # still held by w2
    queue.finish(second)
    assert queue.waiting() == []


def test_a_stale_claim_of_the_same_worker_name_does_not_finish_the_new_one(engine: sa.Engine) -> None:
    clock = Clock()
    queue = RenderQueue(engine, lease_s=10, clock=clock)
    queue.add(requested("alice"))
    first = queue.claim("w")
    assert first is not None
    clock.now += 11
    second = queue.claim("w")  # the same process and thread, restarted
    assert second is not None and second.attempts == 2
    assert not queue.renew(first)
    queue.finish(first)
    assert [w.worker for w in queue.waiting()] == ["w"]
    assert queue.renew(second)


def test_a_render_that_lost_its_lease_does_not_finish_the_request_for_its_new_holder(engine: sa.Engine) -> None:
    clock = Clock()
    queue = RenderQueue(engine, lease_s=0.3, clock=clock)  # renewed every 0.1 s of real time
    event = requested("alice")
    queue.add(event)
    stop = threading.Event()
    taken: list[Claim] = []

    def slow_render(_: EventEnvelope) -> None:
        clock.now += 1  # the lease lapses (renewals could not reach the database, say) ...
        other = queue.claim("w2")  # ... and another worker takes the request
        assert other is not None
        taken.append(other)
        threading.Event().wait(0.5)  # the renewal finds the lease lost
        stop.set()

    handled = serve_renders(queue, slow_render, lambda c: pytest.fail(f"gave up {c}"), stop, idle_s=0.01)
    assert handled == 0
    assert [(w.video_id, w.worker) for w in queue.waiting()] == [(event.stream_id, "w2")]
    assert queue.renew(taken[0])
