"""Benchmarks of the distributed mode through a real Kafka broker.

Each role runs in a process of its own, as each runs in a container of its own when deployed.

1. Throughput. The floor, measured in the same run: kafka-python alone, one process producing the very
   messages the relay would publish (same keys, same bytes, same routing headers, the relay's producer
   settings) and one process reading them as a consumer group, with no event store or database anywhere.
   Against it:
   - outbox to projections: the relay and the projection consumer (two processes) on an outbox filled
     beforehand, timed from the relay's start until the projections hold every event;
   - command to projections: the same, with the commands that record the events running meanwhile (a
     third process), timed from the first command. The write side alone (the same commands with no
     pipeline) is timed too: the live rate cannot beat it;
   - each stage alone, to show which one bounds the pipeline: the raw producer and the relay, each onto a
     topic of its own, from their start until the broker acknowledged everything; then the raw consumer and
     the projection consumer, each reading what was written there, from joining their group until they
     hold it all.
   Target: pipeline rate >= 0.7 x the floor. The default 40,000 events keep the pipeline busy for seconds:
   with 10,000 it runs for about one, and its filling (the relay reads its first batch of 10,000 before it
   sends any) and draining (the consumer finishes what the broker holds after the relay's last send) are a
   large part of that second.
2. Latency of a revocation cascade: a cameo used in 1,000 published videos, each with three levels of remixes
   below it (4,000 takedowns); time from the ConsentRevoked command to the feed showing none of them, with the
   relay and the projection consumer following live. Median and p99 over several runs (with few runs, p99 is
   the slowest). The embedded runner's time for the same work (command, then catch-up in-process) is measured
   in the same run for comparison.

It needs a broker: PROVENANCE_TEST_KAFKA_BOOTSTRAP=host:port, or one is started from the cached Kafka
distribution (scripts/kafka/fetch) as the test suite does.

    python -m bench.bench_kafka [--events 40000] [--repeat 3] [--latency-runs 7] [--videos 1000] [--remix-depth 3]
                                [--backend sqlite|postgres --dsn URL] [--profile N]

`--profile N` runs the relay and the projection consumer of the outbox pipeline under `cProfile` (which slows
them, so the ratios printed with it are not the figures) and prints, for the last run, the N functions that
took the most time of their own in each, from `go` until the projections hold every event.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import logging
import multiprocessing as mp
import os
import pstats
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path
from typing import Any, cast

from bench.bench_core import cascade_tree, lifecycle, measured
from projections.queries import ReadModels
from projections.store import open_store
from provenance.bootstrap import System
from provenance.config import Settings
from provenance.kafka.admin import TopicSpec, ensure_topic
from provenance.kafka.consumers import ConsumerOptions, TopicFollower
from provenance.kafka.positions import Positions, open_engine, open_projections
from provenance.kafka.relay import Relay, RelayOptions, headers_of
from provenance.kafka.sinks import ProjectionSink
from provenance.log import last_position, read_log
from provenance.runner import EmbeddedRunner, ProjectionConsumer

PARTITIONS = 6
RawMessage = tuple[bytes, bytes, list[tuple[str, bytes]]]
"""What the relay publishes for an event: its key, its value and its headers."""
DEADLINE_S = 900.0
SPAWN = mp.get_context("spawn")


@contextlib.contextmanager
def broker() -> Iterator[str]:
    """The broker named by PROVENANCE_TEST_KAFKA_BOOTSTRAP, or a throwaway one started here."""
    external = os.environ.get("PROVENANCE_TEST_KAFKA_BOOTSTRAP")
    if external:
        yield external
        return
    from tests.services import KafkaBroker, fetch_kafka, find_java, make_workdir

    try:
        server = KafkaBroker(kafka_home=fetch_kafka(), java=find_java(), workdir=make_workdir("bench-kafka-"))
    except BaseException as exc:  # the helpers skip (a BaseException) when Java or Kafka is missing
        raise SystemExit(f"bench_kafka: no Kafka broker available: {exc}") from None
    try:
        server.start()
        yield server.bootstrap
    finally:
        server.stop()
        shutil.rmtree(server.workdir, ignore_errors=True)


def record_videos(settings: Settings, videos: int) -> int:
    """The write side alone: a person and `videos` lifecycles; returns events recorded."""
    app = System(settings).app
    try:
        before = last_position(app)
        creator = app.register_person(f"bench{uuid.uuid4().hex[:8]}")
        for n in range(videos):
            lifecycle(app, creator, n)
        return last_position(app) - before
    finally:
        app.close()


def quiet_logs() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("kafka").setLevel(logging.CRITICAL)


# --- child processes -------------------------------------------------------------------------------------


@contextlib.contextmanager
def profiled(path: str | None) -> Iterator[None]:
    """A role's measured part, under `cProfile` with its statistics written to `path` when there is one."""
    profile = cProfile.Profile() if path else None
    with measured(profile):
        yield
    if profile is not None and path:
        profile.dump_stats(path)


def connected_relay(settings: Settings) -> Relay:
    assert settings.kafka_bootstrap is not None
    app = System(settings).app
    relay = Relay(
        app, Positions(open_engine(settings.projections_database)), settings.kafka_bootstrap, settings.kafka_topic
    )
    relay.connect()
    relay.position()
    return relay


def relay_process(settings: Settings, go: Any, stop: Any, profile_to: str | None = None) -> None:
    quiet_logs()
    relay = connected_relay(settings)
    go.wait()
    with profiled(profile_to):
        relay.run(cast(threading.Event, stop))
    relay.app.close()


def relay_alone_process(settings: Settings, ready: Any, go: Any, took: Any) -> None:
    """The relay by itself: (seconds, events) from `go` until the broker acknowledged the whole outbox."""
    quiet_logs()
    relay = connected_relay(settings)
    ready.set()
    go.wait()
    started = time.monotonic()
    while relay.relay_batch():
        pass
    took[:] = [time.monotonic() - started, relay.relayed]
    relay.close()
    relay.app.close()


def projections_process(
    settings: Settings,
    expected: int,
    ready: Any,
    done_at: Synchronized[float],
    stop: Any,
    profile_to: str | None = None,
    took: Any = None,
) -> None:
    """Joins the group, says so, and notes the time at which the projections hold `expected` events; with
    `took`, also (seconds, events) from joining until then, for a topic filled beforehand."""
    quiet_logs()
    assert settings.kafka_bootstrap is not None
    store = open_projections(settings.projections_database)
    options = ConsumerOptions(group_id=f"{settings.kafka_topic}-projections", poll_timeout_ms=100)
    follower = TopicFollower(settings.kafka_bootstrap, settings.kafka_topic, ProjectionSink(store), options)
    while follower.assignment() != set(range(PARTITIONS)):
        follower.poll_once()
    ready.set()
    joined_at, before = time.monotonic(), follower.handled + follower.parked
    with profiled(profile_to):
        while not stop.is_set():
            follower.poll_once()
            if expected and done_at.value == 0.0 and follower.handled + follower.parked >= expected:
                done_at.value = time.monotonic()
                if took is not None:
                    took[:] = [done_at.value - joined_at, expected - before]
    follower.close()


def raw_producer_process(
    bootstrap: str, topic: str, messages: list[RawMessage], ready: Any, go: Any, took: Any = None
) -> None:
    """Connects, says so, and produces the messages from `go`; with `took`, notes (seconds, messages) until the
    broker acknowledged them all."""
    from kafka import KafkaProducer

    options = RelayOptions()
    producer = KafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,
        linger_ms=options.linger_ms,
        batch_size=options.producer_batch_bytes,
    )
    ready.set()
    go.wait()
    started = time.monotonic()
    for key, value, headers in messages:
        producer.send(topic, key=key, value=value, headers=headers)
    producer.flush()
    if took is not None:
        took[:] = [time.monotonic() - started, len(messages)]
    producer.close()


def raw_consumer_process(
    bootstrap: str, topic: str, expected: int, ready: Any, done_at: Synchronized[float], took: Any = None
) -> None:
    """Reads `expected` messages as a consumer group; with `took`, notes (seconds, messages) from joining."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=f"{topic}-g",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=2000,
        fetch_max_wait_ms=100,
    )
    consumer.partitions_for_topic(topic)  # known before joining, or the group leader may assign nothing
    consumer.subscribe([topic])
    received = 0
    while len(consumer.assignment()) < PARTITIONS:
        received += sum(map(len, consumer.poll(timeout_ms=100).values()))
    ready.set()
    joined_at, before = time.monotonic(), received
    while received < expected:
        received += sum(map(len, consumer.poll(timeout_ms=100).values()))
    done_at.value = time.monotonic()
    if took is not None:
        took[:] = [done_at.value - joined_at, expected - before]
    consumer.close()


def commands_process(settings: Settings, videos: int, go: Any) -> None:
    go.wait()
    record_videos(settings, videos)


# --- 1. throughput -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Alone:
    """Each stage of the floor and of the outbox pipeline by itself, per second: what each would reach with the
    cores to itself and the broker (the consumers read a topic filled beforehand)."""

    raw_producer: float
    raw_consumer: float
    relay: float
    consumer: float


@dataclass(frozen=True)
class Throughput:
    events: int
    raw_per_s: float
    write_side_per_s: float
    outbox_per_s: float
    live_per_s: float
    alone: Alone


def wait_for(read: Callable[[], float], processes: list[Any]) -> float:
    """What `read` gives once a process has set it (it reads 0.0 until then)."""
    deadline = time.monotonic() + DEADLINE_S
    while (value := read()) == 0.0:
        if any(p.exitcode not in (None, 0) for p in processes):
            raise RuntimeError("a benchmark process failed")
        if all(p.exitcode is not None for p in processes) and read() == 0.0:
            raise RuntimeError("the benchmark's processes ended without their measurement")
        if time.monotonic() > deadline:
            raise TimeoutError("the benchmark did not finish in time")
        time.sleep(0.002)
    return float(value)


def finish(processes: list[Any], stop: Any | None = None) -> None:
    if stop is not None:
        stop.set()
    for process in processes:
        process.join(60)
        if process.exitcode != 0:
            raise RuntimeError(f"{process.name} exited with {process.exitcode}")


def raw_floor(bootstrap: str, messages: list[RawMessage]) -> float:
    topic = f"bench-raw-{uuid.uuid4().hex[:8]}"
    ensure_topic(bootstrap, TopicSpec(topic, PARTITIONS))
    go, ready, connected, done_at = SPAWN.Event(), SPAWN.Event(), SPAWN.Event(), SPAWN.Value("d", 0.0)
    consumer = SPAWN.Process(
        target=raw_consumer_process, args=(bootstrap, topic, len(messages), ready, done_at), name="raw consumer"
    )
    producer = SPAWN.Process(
        target=raw_producer_process, args=(bootstrap, topic, messages, connected, go), name="raw producer"
    )
    consumer.start()
    producer.start()
    if not ready.wait(120) or not connected.wait(120):
        raise TimeoutError("the consumer did not join its group, or the producer did not connect")
    time.sleep(1.0)  # both settle, as the pipeline's processes do
    started = time.monotonic()
    go.set()
    finished = wait_for(lambda: done_at.value, [consumer, producer])
    finish([consumer, producer])
    return len(messages) / (finished - started)


ROLES_PROFILED = ("relay", "projections")


def profile_file(directory: Path, role: str) -> Path:
    """Where a profiled role of the outbox pipeline writes its statistics."""
    return directory / f"{role}.prof"


def pipeline(settings: Settings, expected: int, videos: int | None, profile_dir: Path | None = None) -> float:
    """Events per second into the projections; with `videos`, the commands run in a process meanwhile; with
    `profile_dir`, the relay and the consumer write their profiles there (`profile_file`)."""
    assert settings.kafka_bootstrap is not None
    ensure_topic(settings.kafka_bootstrap, TopicSpec(settings.kafka_topic, PARTITIONS))
    settings.home.mkdir(parents=True, exist_ok=True)
    open_projections(settings.projections_database).engine.dispose()
    go, ready, stop, done_at = SPAWN.Event(), SPAWN.Event(), SPAWN.Event(), SPAWN.Value("d", 0.0)
    relay_profile, consumer_profile = (
        [str(profile_file(profile_dir, role)) for role in ROLES_PROFILED] if profile_dir else [None, None]
    )
    consumer = SPAWN.Process(
        target=projections_process,
        args=(settings, expected, ready, done_at, stop, consumer_profile),
        name="projections",
    )
    relay = SPAWN.Process(target=relay_process, args=(settings, go, stop, relay_profile), name="relay")
    processes = [consumer, relay]
    if videos is not None:
        processes.append(SPAWN.Process(target=commands_process, args=(settings, videos, go), name="commands"))
    for process in processes:
        process.start()
    if not ready.wait(120):
        raise TimeoutError("the consumer did not join its group")
    time.sleep(1.0)  # the relay process has started and connected by now
    started = time.monotonic()
    go.set()
    finished = wait_for(lambda: done_at.value, processes)
    finish(processes, stop)
    return expected / (finished - started)


def bench_throughput(home: Path, base: Settings, events: int, profile_dir: Path | None = None) -> Throughput:
    videos = max(1, (events - 1) // 5)
    filled = replace(base, home=home / "filled", kafka_topic=f"bench-outbox-{uuid.uuid4().hex[:8]}")
    started = time.perf_counter()
    total = record_videos(filled, videos)
    write_side = total / (time.perf_counter() - started)
    app = System(filled).app
    messages = [(e.stream_id.encode(), e.to_json(), headers_of(e)) for e in read_log(app, 0, total)]
    app.close()
    raw = raw_floor(str(base.kafka_bootstrap), messages)
    outbox = pipeline(filled, total, None, profile_dir)
    live = replace(base, home=home / "live", kafka_topic=f"bench-live-{uuid.uuid4().hex[:8]}")
    live_rate = pipeline(live, total, videos)
    return Throughput(total, raw, write_side, outbox, live_rate, stages_alone(home, filled, messages))


def stages_alone(home: Path, filled: Settings, messages: list[RawMessage]) -> Alone:
    """Each producer alone onto a fresh topic, then each consumer alone reading what it wrote."""
    bootstrap = str(filled.kafka_bootstrap)
    raw_topic = f"bench-alone-raw-{uuid.uuid4().hex[:8]}"
    ensure_topic(bootstrap, TopicSpec(raw_topic, PARTITIONS))
    relayed = replace(
        filled,
        kafka_topic=f"bench-alone-{uuid.uuid4().hex[:8]}",
        projections_url=f"sqlite:///{home / 'alone-relay.db'}",  # the relay's position starts afresh
    )
    ensure_topic(bootstrap, TopicSpec(relayed.kafka_topic, PARTITIONS))
    consumed = replace(relayed, projections_url=f"sqlite:///{home / 'alone-projections.db'}")
    for settings in (relayed, consumed):
        open_projections(settings.projections_database).engine.dispose()
    expected = len(messages)

    def timed(target: Callable[..., None], *args: Any, producer: bool) -> float:
        """One stage in a process of its own: its rate as it measured it (`took`: seconds, events). A producer
        starts on `go` once connected; a consumer as soon as it has joined its group."""
        ready, go, stop, took = SPAWN.Event(), SPAWN.Event(), SPAWN.Event(), SPAWN.Array("d", 2)
        signals = {"ready": ready, "took": took}
        signals |= {"go": go} if producer else {"done_at": SPAWN.Value("d", 0.0)}
        if target is projections_process:
            signals["stop"] = stop
        process = SPAWN.Process(target=target, args=args, kwargs=signals, name=target.__name__)
        process.start()
        if not ready.wait(120):
            raise TimeoutError(f"{target.__name__} did not start")
        go.set()
        seconds = wait_for(lambda: took[0], [process])
        finish([process], stop)
        return float(took[1] / seconds)

    return Alone(
        raw_producer=timed(raw_producer_process, bootstrap, raw_topic, messages, producer=True),
        raw_consumer=timed(raw_consumer_process, bootstrap, raw_topic, expected, producer=False),
        relay=timed(relay_alone_process, relayed, producer=True),
        consumer=timed(projections_process, consumed, expected, producer=False),
    )


# --- 2. revocation latency -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Revocation:
    takedowns: int
    command_s: float
    kafka_s: float
    embedded_s: float


def bench_revocation(home: Path, base: Settings, videos: int, depth: int) -> Revocation:
    settings = replace(base, home=home, kafka_topic=f"bench-revoke-{uuid.uuid4().hex[:8]}")
    assert settings.kafka_bootstrap is not None
    app = System(settings).app
    tree = cascade_tree(app, videos, depth)
    owner, cameo, grant, made = tree.owner, tree.cameo, tree.grant, set(tree.videos)
    embedded = open_store(f"sqlite:///{home / 'embedded.db'}")
    runner = EmbeddedRunner(app, [ProjectionConsumer(embedded)])
    runner.run_once()

    ensure_topic(settings.kafka_bootstrap, TopicSpec(settings.kafka_topic, PARTITIONS))
    reads = ReadModels(open_projections(settings.projections_database).url)
    go, ready, stop, done_at = SPAWN.Event(), SPAWN.Event(), SPAWN.Event(), SPAWN.Value("d", 0.0)
    processes = [
        SPAWN.Process(target=projections_process, args=(settings, 0, ready, done_at, stop), name="projections"),
        SPAWN.Process(target=relay_process, args=(settings, go, stop), name="relay"),
    ]
    for process in processes:
        process.start()
    if not ready.wait(120):
        raise TimeoutError("the consumer did not join its group")
    go.set()
    poll_until(lambda: made <= reads.feed_ids(), every_s=0.05)

    started = time.perf_counter()
    outcome = app.revoke_consent(owner, cameo, grant, "revoked for the benchmark")
    commanded = time.perf_counter()
    seen = poll_until(lambda: not made & reads.feed_ids(), every_s=0.005)
    finish(processes, stop)

    caught_up = time.perf_counter()
    runner.run_once()
    embedded_s = (commanded - started) + (time.perf_counter() - caught_up)
    assert not made & ReadModels(embedded.url).feed_ids()
    app.close()
    return Revocation(len(outcome.takedowns), commanded - started, seen - started, embedded_s)


def poll_until(predicate: Callable[[], bool], every_s: float) -> float:
    deadline = time.monotonic() + DEADLINE_S
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("the benchmark did not finish in time")
        time.sleep(every_s)
    return time.perf_counter()


def crc_implementation() -> str:
    """Without the `crc32c` C extension kafka-python checks record CRCs in pure Python, several times slower."""
    from kafka.record import util

    return "crc32c C extension" if util.crc32c_c is not None else "pure Python (pip install crc32c)"


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    rank = max(1, -(-int(fraction * 1000) * len(ordered) // 1000))
    return ordered[min(len(ordered), rank) - 1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite", help="the event store")
    parser.add_argument("--dsn", help="PostgreSQL URL for --backend postgres (a database of its own)")
    parser.add_argument("--events", type=int, default=40_000, help="events for the throughput part")
    parser.add_argument("--repeat", type=int, default=3, help="throughput runs (medians are reported)")
    parser.add_argument("--latency-runs", type=int, default=7)
    parser.add_argument("--videos", type=int, default=1000, help="videos using the revoked cameo")
    parser.add_argument("--remix-depth", type=int, default=3, help="levels of remixes below each of them")
    parser.add_argument("--skip", action="append", default=[], choices=["throughput", "latency"])
    parser.add_argument("--profile", type=int, default=0, metavar="N", help="print the relay's and consumer's top N")
    args = parser.parse_args()
    if args.backend == "postgres" and not args.dsn:
        parser.error("--backend postgres needs --dsn")
    quiet_logs()
    with broker() as bootstrap, tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        base = Settings(home=home, event_store=args.backend, postgres_dsn=args.dsn, kafka_bootstrap=bootstrap)
        if "throughput" not in args.skip:
            profile_dir = home if args.profile else None
            runs = [bench_throughput(home / f"t{i}", base, args.events, profile_dir) for i in range(args.repeat)]

            def med(field: str) -> float:
                return statistics.median(getattr(r, field) for r in runs)

            raw = med("raw_per_s")
            outbox_ratio = statistics.median(r.outbox_per_s / r.raw_per_s for r in runs)
            live_ratio = statistics.median(r.live_per_s / r.raw_per_s for r in runs)
            print(f"kafka-python record checksums: {crc_implementation()}")
            print(
                f"throughput [{args.backend} event store, sqlite projections, {runs[0].events} events, "
                f"{PARTITIONS} partitions, medians of {len(runs)} runs]:"
            )
            print(f"  floor: raw kafka-python produce + consume     {raw:8.0f} msg/s")
            print(
                f"  outbox -> relay -> Kafka -> projections       {med('outbox_per_s'):8.0f} events/s  "
                f"ratio {outbox_ratio:.2f} (target >= 0.70)"
            )
            print(
                f"  commands -> ... -> projections, live          {med('live_per_s'):8.0f} events/s  "
                f"ratio {live_ratio:.2f} (target >= 0.70)"
            )
            print(
                f"  write side alone (the same commands)          {med('write_side_per_s'):8.0f} events/s  "
                f"ratio {statistics.median(r.write_side_per_s / r.raw_per_s for r in runs):.2f}"
            )
            alone = {field: statistics.median(getattr(r.alone, field) for r in runs) for field in Alone.__annotations__}
            print(
                f"  each alone, per second: raw producer {alone['raw_producer']:.0f}, raw consumer "
                f"{alone['raw_consumer']:.0f}; relay {alone['relay']:.0f}, projection consumer {alone['consumer']:.0f}"
            )
            for role in ROLES_PROFILED if profile_dir is not None else ():
                print(f"{role}, outbox pipeline (last run), under cProfile:")
                stats = pstats.Stats(str(profile_file(profile_dir, role)), stream=sys.stdout)
                stats.sort_stats("tottime").print_stats(args.profile)
        if "latency" not in args.skip:
            results = [
                bench_revocation(home / f"r{i}", base, args.videos, args.remix_depth) for i in range(args.latency_runs)
            ]
            kafka_s = [r.kafka_s for r in results]
            print(
                f"revocation [{args.backend} event store, cameo in {args.videos} videos with {args.remix_depth} "
                "levels of remixes below each, "
                f"{results[0].takedowns} takedowns, {len(results)} runs]:"
            )
            print(
                f"  ConsentRevoked -> feed empty of them, through Kafka: median {statistics.median(kafka_s):.3f} s, "
                f"p99 {percentile(kafka_s, 0.99):.3f} s"
            )
            print(
                f"  revoke command alone: median {statistics.median(r.command_s for r in results):.3f} s; "
                f"embedded (command + in-process catch-up): median "
                f"{statistics.median(r.embedded_s for r in results):.3f} s"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
