"""Benchmarks of the event-sourced core (issue figures in the README).

1. Command throughput of the application against a bare `eventsourcing` append of the same stored events,
   one transaction per command as the application does, in alternating rounds of the same run (target: ratio
   >= 0.7).
2. Projection rebuild of a 200,000-event log into all projections (target: >= 50,000 events/s on SQLite).
3. Revocation cascade: a cameo in 1,000 published videos with three levels of remixes below each; time from
   the revoke command to the feed showing none of them, as a reader polling the feed sees it while the runner
   catches up (target: < 0.5 s embedded), and to every read model holding the cascade.

    python -m bench.bench_core [--backend sqlite|postgres] [--dsn URL] [--videos N] [--rebuild-events N]
                               [--profile N]

`--profile N` also prints, after each figure, the N functions that took the most time of their own in the
measured part (the application's commands, the rebuild, the revoke and catch-up), under `cProfile`.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import dataclasses
import pstats
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from projections.queries import ReadModels
from provenance.application import ProvenanceApp
from provenance.bootstrap import System
from provenance.config import Settings
from provenance.rebuild import REBUILD_PARTS, Rebuilt, describe_parts, rebuild
from provenance.runner import EmbeddedRunner, ProjectionConsumer
from tests.core.support import face, moderation, rendered, signature


def make_settings(home: Path, backend: str, dsn: str | None) -> Settings:
    return Settings(home=home, event_store=backend, postgres_dsn=dsn)  # type: ignore[arg-type]


def lifecycle(app: ProvenanceApp, creator: Any, n: int, cameo: Any = None, remix_of: Any = None) -> Any:
    """One video through every gate: five commands, five events (plus cameo and remix bookkeeping)."""
    video = app.request_generation(
        creator, f"clip {n}", cameo_ids=[cameo] if cameo else [], remix_of=remix_of, command_id=f"req:{creator}:{n}"
    )
    app.record_render(video, rendered(), command_id=f"render:{video}")
    app.record_moderation(video, moderation(), command_id=f"moderate:{video}")
    app.record_signature(video, signature(video), command_id=f"sign:{video}")
    app.publish(video, command_id=f"publish:{video}")
    return video


COMMANDS_ROUND = 50
"""Videos per round of the command benchmark: each round's commands are timed, then the floor's appends of the
same events, so both meet the same disk (whose speed drifts over a run)."""


@contextlib.contextmanager
def measured(profile: cProfile.Profile | None) -> Iterator[None]:
    """A measured part of a benchmark, profiled when a profile is given."""
    if profile is None:
        yield
        return
    profile.enable()
    try:
        yield
    finally:
        profile.disable()


def print_profile(profile: cProfile.Profile | None, top: int) -> None:
    if profile is not None:
        pstats.Stats(profile, stream=sys.stdout).sort_stats("tottime").print_stats(top)


def bench_commands(
    home: Path, backend: str, dsn: str | None, videos: int, profile: cProfile.Profile | None = None
) -> dict[str, float]:
    app = System(make_settings(home / "app", backend, dsn)).app
    creator = app.register_person(f"bench-{uuid.uuid4().hex[:8]}")
    app_seconds = bare_seconds = 0.0
    commands = 0
    for first in range(0, videos, COMMANDS_ROUND):
        position = app.recorder.max_notification_id() or 0
        started = time.perf_counter()
        with measured(profile):
            for n in range(first, min(first + COMMANDS_ROUND, videos)):
                lifecycle(app, creator, n)
        app_seconds += time.perf_counter() - started
        stored = list(app.recorder.select_notifications(start=position + 1, limit=COMMANDS_ROUND * 10))
        commands += len(stored)

        # The floor: eventsourcing appending the same domain events itself (its mapper and recorder, one
        # transaction per command as the application does), into the same store with versions moved aside.
        moved = [
            dataclasses.replace(e, originator_version=e.originator_version + 1_000_000)  # type: ignore[type-var]
            for e in map(app.mapper.to_domain_event, stored)
        ]
        started = time.perf_counter()
        for event in moved:
            app.events.put([event])
        bare_seconds += time.perf_counter() - started
    app.close()
    app_rate, bare_rate = commands / app_seconds, commands / bare_seconds
    return {"commands": commands, "app_per_s": app_rate, "bare_per_s": bare_rate, "ratio": app_rate / bare_rate}


REBUILD_ROUNDS = 2


def part_seconds(runs: list[Rebuilt]) -> dict[str, float]:
    """The median seconds of each part of these rebuilds, by part name (`REBUILD_PARTS`)."""
    return {name: statistics.median(r.parts()[name] for r in runs) for name in REBUILD_PARTS}


def bench_rebuild(
    home: Path, backend: str, dsn: str | None, events: int, profile: cProfile.Profile | None = None
) -> dict[str, float]:
    settings = make_settings(home / "rebuild", backend, dsn)
    system = System(settings)
    app = system.app
    creator = app.register_person(f"bench-{uuid.uuid4().hex[:8]}")
    n = 0
    while (app.recorder.max_notification_id() or 0) < events:
        lifecycle(app, creator, n)
        n += 1
    total = app.recorder.max_notification_id() or 0
    system.close()
    system = System(settings)  # as `provenance rebuild` runs: a process that recorded none of the log

    # The default (one process per CPU, each replaying a share of the log) against one process replaying all
    # of it, alternately, so that both meet the disk and its cache in the same states.
    names = list(system.store.projections)
    shared: list[Rebuilt] = []
    alone: list[Rebuilt] = []
    for _ in range(REBUILD_ROUNDS):
        with measured(profile):
            shared.append(rebuild(system, names, progress=False))
        alone.append(rebuild(system, names, progress=False, workers=1))
    system.close()
    seconds = statistics.median(r.seconds for r in shared)
    return {
        "events": float(total),
        "seconds": seconds,
        "events_per_s": total / seconds,
        "workers": float(shared[0].workers),
        "one_worker_per_s": total / statistics.median(r.seconds for r in alone),
        **part_seconds(shared),
    }


def bench_rebuild_curve(home: Path, sizes: list[int]) -> list[dict[str, float]]:
    """The rebuild rate as the log grows: one log, extended to each size in turn and rebuilt at each.

    The log is a few hundred videos taken through every gate by the application, then copies of those streams
    (new stream and event ids, same payloads) appended with eventsourcing's own recorder in large transactions:
    the events a rebuild replays are the application's, without hours of commands to make two million of them.
    """

    system = System(make_settings(home / "curve", "sqlite", None))
    app = system.app
    creator = app.register_person(f"bench-{uuid.uuid4().hex[:8]}")
    for n in range(400):
        lifecycle(app, creator, n)
    template = [app.mapper.to_domain_event(n) for n in app.recorder.select_notifications(start=1, limit=10_000)]
    template = [e for e in template if getattr(e, "type", None) != "PersonRegistered"]
    system.close()
    system = System(make_settings(home / "curve", "sqlite", None))  # a process that recorded none of the log
    app = system.app
    results = []
    for size in sorted(sizes):
        while (app.recorder.max_notification_id() or 0) < size:
            renamed: dict[Any, uuid.UUID] = {}
            copies = [
                dataclasses.replace(  # type: ignore[type-var]
                    e,
                    originator_id=renamed.setdefault(e.originator_id, uuid.uuid4()),
                    event_id=str(uuid.uuid4()),
                )
                for e in template
            ]
            app.events.put(copies)
        done = rebuild(system, list(system.store.projections), progress=False)
        results.append(
            {
                "events": float(done.events),
                "seconds": done.seconds,
                "events_per_s": done.events / done.seconds,
                "replay_per_s": done.events / done.replay_seconds,
                **part_seconds([done]),
            }
        )
    system.close()
    return results


@dataclasses.dataclass(frozen=True)
class CascadeTree:
    """A cameo in `roots` published videos, each with `depth` levels of remixes below it."""

    owner: Any
    cameo: Any
    grant: Any
    """The grant whose revocation takes every video of the tree down."""
    videos: frozenset[str]


def cascade_tree(app: ProvenanceApp, roots: int, depth: int) -> CascadeTree:
    tag = uuid.uuid4().hex[:6]
    owner = app.register_person(f"owner{tag}")
    grantee = app.register_person(f"grantee{tag}")
    cameo = app.register_cameo(owner, face())
    grant = app.grant_consent(owner, cameo, "approved", grantees=[grantee])
    app.grant_consent(owner, cameo, "everyone", scope=["remix"])
    videos: set[str] = set()
    n = 0
    for _ in range(roots):
        parent = lifecycle(app, grantee, n, cameo=cameo)
        videos.add(str(parent))
        n += 1
        for _ in range(depth):
            parent = lifecycle(app, owner, n, remix_of=parent)
            videos.add(str(parent))
            n += 1
    return CascadeTree(owner, cameo, grant, frozenset(videos))


def bench_cascade(
    home: Path, backend: str, dsn: str | None, roots: int, depth: int, profile: cProfile.Profile | None = None
) -> dict[str, float]:
    """The events and the read models both in SQLite files, or both in the PostgreSQL database."""
    settings = dataclasses.replace(make_settings(home / "cascade", backend, dsn), projections_url=dsn)
    system = System(settings)
    app = system.app
    store = system.store
    runner = EmbeddedRunner(app, [ProjectionConsumer(store)])
    reads = ReadModels(store.url)
    tree = cascade_tree(app, roots, depth)
    alice, cameo, grant = tree.owner, tree.cameo, tree.grant
    runner.run_once()
    visible_before = len(reads.feed_ids())
    feed_clean = threading.Event()
    feed_clean_at = 0.0

    def watch_feed() -> None:  # a reader of the feed, as the platform's pages are
        nonlocal feed_clean_at
        while reads.feed(limit=1)["items"]:
            time.sleep(0.001)
        feed_clean_at = time.perf_counter()
        feed_clean.set()

    with measured(profile):
        started = time.perf_counter()
        outcome = app.revoke_consent(alice, cameo, grant, "revoked for the benchmark")
        revoked_at = time.perf_counter()
        watcher = threading.Thread(target=watch_feed)
        watcher.start()
        runner.run_once()
        caught_up_at = time.perf_counter()
        watcher.join()
    visible_after = len(reads.feed_ids())
    reads.close()
    system.close()
    return {
        "videos": float(visible_before),
        "takedowns": float(len(outcome.takedowns)),
        "visible_after": float(visible_after),
        "command_s": revoked_at - started,
        "to_feed_s": feed_clean_at - started,
        "caught_up_s": caught_up_at - started,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--dsn", help="PostgreSQL URL for --backend postgres")
    parser.add_argument("--videos", type=int, default=1000, help="videos through every gate for part 1")
    parser.add_argument("--rebuild-events", type=int, default=200_000)
    parser.add_argument(
        "--rebuild-curve",
        type=lambda text: [int(size) for size in text.split(",")],
        metavar="N,N,...",
        help="rebuild a growing log at each of these sizes (e.g. 20000,200000,2000000) instead of part 2",
    )
    parser.add_argument("--cascade-roots", type=int, default=1000)
    parser.add_argument("--cascade-repeat", type=int, default=1, help="runs of part 3, each on a fresh home")
    parser.add_argument("--repeat", type=int, default=3, help="runs of part 1 (the median ratio is reported)")
    parser.add_argument("--skip", action="append", default=[], choices=["commands", "rebuild", "cascade"])
    parser.add_argument("--profile", type=int, default=0, metavar="N", help="print each part's top N functions")
    args = parser.parse_args()

    def profile() -> cProfile.Profile | None:
        return cProfile.Profile() if args.profile else None

    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        if "commands" not in args.skip:
            commands_profile = profile()
            runs = [
                bench_commands(home / f"c{i}", args.backend, args.dsn, args.videos, commands_profile)
                for i in range(args.repeat)
            ]
            ratio = statistics.median(r["ratio"] for r in runs)
            best = max(runs, key=lambda r: r["app_per_s"])
            print(
                f"commands [{args.backend}]: application {best['app_per_s']:.0f}/s, bare eventsourcing append "
                f"{best['bare_per_s']:.0f}/s, ratio {ratio:.2f} (median of {len(runs)}; target >= 0.70)"
            )
            print_profile(commands_profile, args.profile)
        if args.rebuild_curve:
            for r in bench_rebuild_curve(home, args.rebuild_curve):
                print(
                    f"rebuild curve: {r['events']:>9,.0f} events in {r['seconds']:7.2f} s = {r['events_per_s']:>7,.0f}"
                    f" events/s (the replay alone {r['replay_per_s']:,.0f}/s; {describe_parts(r)})"
                )
        elif "rebuild" not in args.skip:
            rebuild_profile = profile()
            r = bench_rebuild(home, args.backend, args.dsn, args.rebuild_events, rebuild_profile)
            print(
                f"rebuild [{args.backend}]: {r['events']:.0f} events into all projections in {r['seconds']:.2f} s = "
                f"{r['events_per_s']:.0f} events/s (target >= 50000 on sqlite); one worker alone "
                f"{r['one_worker_per_s']:.0f} events/s: {r['events_per_s'] / r['one_worker_per_s']:.2f}x "
                f"with {r['workers']:.0f} (medians of {REBUILD_ROUNDS}, alternately); {describe_parts(r)}"
            )
            print_profile(rebuild_profile, args.profile)
        if "cascade" not in args.skip:
            cascade_profile = profile()
            for n in range(args.cascade_repeat):
                c = bench_cascade(home / f"cascade{n}", args.backend, args.dsn, args.cascade_roots, 3, cascade_profile)
                print(
                    f"cascade [embedded, {args.backend}]: {c['videos']:.0f} published videos, {c['takedowns']:.0f} "
                    f"takedowns; revoke command {c['command_s']:.2f} s, feed empty of them after "
                    f"{c['to_feed_s']:.2f} s (target < 0.5 s), every read model after {c['caught_up_s']:.2f} s "
                    f"(visible after: {c['visible_after']:.0f})"
                )
            print_profile(cascade_profile, args.profile)
    return 0


if __name__ == "__main__":
    sys.exit(main())
