"""The read models: `feed`, `trace`, `audit` (each brings the projections up to date first)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from provenance.cli import render
from provenance.cli.handlers.common import show

if TYPE_CHECKING:
    from provenance.bootstrap import System


def feed(system: System, args: argparse.Namespace) -> int:
    system.catch_up()
    page = system.reads.feed(limit=args.limit, cursor=args.cursor)
    show(args, page, lambda: render.render_feed(page))
    return 0


def trace(system: System, args: argparse.Namespace) -> int:
    system.catch_up()
    found = system.reads.trace(args.video)
    show(args, found, lambda: render.render_trace(found))
    return 0


def audit(system: System, args: argparse.Namespace) -> int:
    system.catch_up()
    trail = system.reads.audit_trail(args.stream)
    show(args, trail, lambda: render.render_audit(trail))
    return 0
