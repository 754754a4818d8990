"""Running and repairing the system: `serve`, `parked list|replay`, `rebuild`, `demo`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from kernel.errors import InvalidInput, StageFailed
from provenance.cli import render
from provenance.cli.handlers.common import emit, show

if TYPE_CHECKING:
    from provenance.bootstrap import System


def serve(system: System, args: argparse.Namespace) -> int:
    from provenance.logs import configure_logging
    from provenance.serve import serve as serve_roles

    configure_logging(system.settings)
    return serve_roles(system, args.role)


def parked_list(system: System, args: argparse.Namespace) -> int:
    from provenance.kafka.roles import list_parked

    entries = list_parked(system, args.consumer, include_replayed=args.all)
    show(args, render.parked_json(entries), lambda: render.render_parked(entries))
    return 0


def parked_replay(system: System, args: argparse.Namespace) -> int:
    """Exit 6 when any replay failed (it stays parked), with one line saying how many."""
    from provenance.kafka.roles import parked_consumer, replay_parked

    handler = None if args.consumer == "projections" else system.worker_handler(args.consumer)
    results = replay_parked(system, parked_consumer(args.consumer), ids=args.id or None, handler=handler)
    emit(render.render_replay(results))
    failed = sum(r.status == "failed" for r in results)
    if failed:
        raise StageFailed(f"{failed} of {len(results)} parked event(s) could not be replayed and stay parked")
    return 0


def rebuild(system: System, args: argparse.Namespace) -> int:
    from provenance.rebuild import describe_parts
    from provenance.rebuild import rebuild as rebuild_projections

    known = list(system.store.projections)
    names = args.projection or known
    unknown = set(names) - set(known)
    if unknown:
        raise InvalidInput(f"unknown projection(s): {', '.join(sorted(unknown))} (known: {', '.join(known)})")
    done = rebuild_projections(system, names, progress=not args.quiet, workers=args.workers)
    print(
        f"rebuilt {', '.join(names)} from {done.events} events in {done.seconds:.2f} s by {done.workers} "
        f"process{'es' if done.workers != 1 else ''}: {describe_parts(done.parts())}"
    )
    return 0


def demo(system: System, args: argparse.Namespace) -> int:
    """The demo builds its own system in its output directory; this one is not touched."""
    from devkit.demo import run_demo

    return run_demo(Path(args.out))
