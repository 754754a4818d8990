"""The process roles of the distributed stack, each a loop that runs until its stop event is set.

`provenance serve --role ROLE` calls one of these. Each creates its clients lazily, makes sure the event
topic exists (so services may start in any order), logs its progress, tells its `Progress` how long each
round of its loop may take (the heartbeat for the container health check stops when a round overruns), never
spins while idle, and leaves its consumer group cleanly on stop.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable

from kernel.errors import InvalidInput
from projections.framework import ProjectionStore
from provenance.bootstrap import System
from provenance.consent_watch import NAME as CONSENT_WATCH
from provenance.kafka.admin import TopicSpec, ensure_topic
from provenance.kafka.backoff import Backoff
from provenance.kafka.client import bootstrap_of
from provenance.kafka.consumers import ConsumerOptions, TopicFollower
from provenance.kafka.dead_letters import (
    DeadLetters,
    Parked,
    ReplayResult,
    handler_replayer,
    projection_replayer,
)
from provenance.kafka.errors import TopicError
from provenance.kafka.health import Progress
from provenance.kafka.lease import Lease
from provenance.kafka.positions import Positions, open_engine
from provenance.kafka.relay import Relay, RelayOptions
from provenance.kafka.sinks import PROJECTIONS, HandlerSink, ProjectionSink
from provenance.render_queue import Claim, RenderQueue, give_up_render, serve_renders
from schemas.envelope import EventEnvelope

log = logging.getLogger(__name__)

GROUP_PREFIX = "provenance"


def wait_for_topic(bootstrap: str, spec: TopicSpec, stop: threading.Event) -> bool:
    """Make sure the topic exists, waiting for the broker as long as it takes; False if stopped first."""
    backoff = Backoff(0.5, 15.0)
    while not stop.is_set():
        try:
            ensure_topic(bootstrap, spec)
            return True
        except TopicError as exc:
            delay = backoff.wait(stop)
            log.warning("waiting for Kafka at %s (%s); retrying in %.1f s", bootstrap, exc, delay)
    return False


def group_id(name: str) -> str:
    """The consumer group of a role: every replica of it shares the partitions."""
    return f"{GROUP_PREFIX}-{name.replace(':', '-')}"


def run_relay(
    system: System, stop: threading.Event, options: RelayOptions | None = None, progress: Progress | None = None
) -> None:
    """Publish the outbox to the configured topic until `stop` is set."""
    settings = system.settings
    bootstrap = bootstrap_of(settings)
    engine = open_engine(settings.projections_database)
    lease = Lease(engine, f"relay:{settings.kafka_topic}")
    chosen = options or RelayOptions(partitions=settings.kafka_partitions)
    relay = Relay(system.app, Positions(engine), bootstrap, settings.kafka_topic, chosen, lease=lease)
    log.info("relay: publishing to %s at %s", settings.kafka_topic, bootstrap)
    try:
        relay.run(stop, progress)
    finally:
        engine.dispose()
        log.info("relay: stopped after publishing %d events", relay.relayed)


def run_projection_consumer(
    system: System,
    stop: threading.Event,
    options: ConsumerOptions | None = None,
    *,
    store: ProjectionStore | None = None,
    partitions: int | None = None,
    progress: Progress | None = None,
) -> None:
    """Build every projection from the topic, as one member of the projections consumer group."""
    settings = system.settings
    bootstrap = bootstrap_of(settings)
    if not wait_for_topic(bootstrap, TopicSpec(settings.kafka_topic, partitions or settings.kafka_partitions), stop):
        return
    projection_store = store or system.store
    follower = TopicFollower(
        bootstrap,
        settings.kafka_topic,
        ProjectionSink(projection_store),
        options or ConsumerOptions(group_id=group_id(PROJECTIONS)),
    )
    log.info("projections: following %s at %s", settings.kafka_topic, bootstrap)
    try:
        follower.run(stop, progress)
    finally:
        log.info("projections: stopped after %d events (%d parked)", follower.handled, follower.parked)


def run_worker_consumer(
    system: System,
    stop: threading.Event,
    name: str,
    handler: Callable[[EventEnvelope], None],
    options: ConsumerOptions | None = None,
    *,
    partitions: int | None = None,
    progress: Progress | None = None,
) -> None:
    """Feed every event to `handler` (which sends idempotent commands), as a member of group `name`.

    The position is stored per partition under consumer `name` after each batch: at-least-once. The name must
    not be a projection's, whose checkpoints are kept in the same table (each would skip what the other read).
    """
    from projections.store import all_projections

    if name in {p.name for p in all_projections()}:
        raise ValueError(f"a worker cannot be named {name!r}: that is a projection's name")
    settings = system.settings
    bootstrap = bootstrap_of(settings)
    if not wait_for_topic(bootstrap, TopicSpec(settings.kafka_topic, partitions or settings.kafka_partitions), stop):
        return
    engine = open_engine(settings.projections_database)
    # Gate work is slow (a render can take minutes): small batches, and a long allowance between polls so
    # that a busy worker is not taken for a dead one. A dead one still leaves by its missed heartbeats.
    chosen = options or ConsumerOptions(group_id=group_id(name), max_poll_records=10, max_poll_interval_ms=1_800_000)
    follower = TopicFollower(bootstrap, settings.kafka_topic, HandlerSink(name, Positions(engine), handler), chosen)
    log.info("%s: following %s at %s", name, settings.kafka_topic, bootstrap)
    try:
        follower.run(stop, progress)
    finally:
        engine.dispose()
        log.info("%s: stopped after %d events (%d parked)", name, follower.handled, follower.parked)


def run_generator(
    system: System,
    stop: threading.Event,
    queue: RenderQueue | None = None,
    *,
    partitions: int | None = None,
    progress: Progress | None = None,
) -> None:
    """The generator role: queue the requests from the topic, and render them fairly between creators.

    The consumer only adds requests to the shared render queue (fast, so its partitions never wait behind a
    render); this thread renders whatever the queue serves next. Replicas share both the partitions and the
    queue. `progress` follows the consumer's loop: a render may take minutes.
    """
    from provenance.domain.video import REQUESTED

    queue = queue or RenderQueue(open_engine(system.settings.projections_database))
    workers = system.gate_workers(render=True)
    app = system.app

    def add(event: EventEnvelope) -> None:
        if event.event_type == "GenerationRequested" and app.video(event.stream_id).state == REQUESTED:
            queue.add(event)

    def give_up(claim: Claim) -> None:
        give_up_render(app, queue, claim)

    failure: list[BaseException] = []

    def consume() -> None:
        try:
            run_worker_consumer(system, stop, "generator", add, partitions=partitions, progress=progress)
        except BaseException as exc:
            failure.append(exc)
            stop.set()

    consumer = threading.Thread(target=consume, name="generator-consumer", daemon=True)
    consumer.start()
    try:
        rendered = serve_renders(queue, workers.handlers()["render"], give_up, stop)
        log.info("generator: stopped after %d renders", rendered)
    finally:
        stop.set()
        consumer.join()
    if failure:
        raise failure[0]


def run_consent_watch(
    system: System, stop: threading.Event, sweep_every_s: float = 30.0, progress: Progress | None = None
) -> None:
    """The consent watch of the distributed mode: unfollows from the topic, and the expiry timer.

    One member of the `provenance-consent` group re-checks the cameos of both people of every unfollow; every
    replica also sweeps the consent read model (which the projections service keeps) for expiries that passed.
    Both are idempotent on the write side, so replicas and restarts record nothing twice.
    """
    watch = system.consent_watch

    def sweep() -> None:
        while not stop.is_set():
            try:
                watch.sweep_expiries(system.clock())
            except Exception as exc:  # a database hiccup: the next sweep tries again
                log.warning("consent: the expiry sweep failed (%s); retrying in %.0f s", exc, sweep_every_s)
            stop.wait(sweep_every_s)

    timer = threading.Thread(target=sweep, name="consent-expiry", daemon=True)
    timer.start()
    try:
        run_worker_consumer(system, stop, CONSENT_WATCH, watch.handle_one, progress=progress)
    finally:
        stop.set()
        timer.join()


def list_parked(
    system: System, consumer: str | None = None, *, include_replayed: bool = False, limit: int | None = None
) -> list[Parked]:
    """Parked events in the projections database (`provenance parked list`)."""
    return DeadLetters(system.store.engine).entries(consumer, include_replayed=include_replayed, limit=limit)


def parked_consumer(role: str) -> str:
    """The consumer name a role parks events under (`provenance parked replay ROLE`)."""
    return CONSENT_WATCH if role == "consent" else role


PARKED_FORMERLY = {CONSENT_WATCH: ("consent",)}
"""Names a consumer parked events under in earlier versions: the consent role's before it kept a position of
its own (its parked events are its still, and replayed with the rest)."""


def replay_parked(
    system: System,
    consumer: str,
    *,
    ids: Iterable[int] | None = None,
    handler: Callable[[EventEnvelope], None] | None = None,
) -> list[ReplayResult]:
    """Replay a consumer's parked events (`provenance parked replay`): the projections', or a worker's with
    the same handler its role runs."""
    dead_letters = DeadLetters(system.store.engine)
    if consumer == PROJECTIONS:
        return dead_letters.replay(consumer, projection_replayer(system.store), ids)
    if handler is None:
        raise InvalidInput(f"replaying the events {consumer} parked needs its handler")
    return dead_letters.replay(consumer, handler_replayer(handler), ids, formerly=PARKED_FORMERLY.get(consumer, ()))
