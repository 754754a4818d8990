"""Dropping projections and replaying them from the log, with a progress bar."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence

from provenance.bootstrap import System
from provenance.log import last_position
from provenance.runner import EmbeddedRunner, ProjectionConsumer


def rebuild(system: System, names: Sequence[str], progress: bool = True, batch_size: int = 20_000) -> tuple[int, float]:
    """Reset the named projections and replay the whole log into them; returns (events, seconds)."""
    from tqdm import tqdm

    system.store.reset(names)
    runner = EmbeddedRunner(system.app, [ProjectionConsumer(system.store.only(names))], batch_size=batch_size)
    started = time.perf_counter()
    with tqdm(
        total=last_position(system.app), unit="ev", disable=not progress or not sys.stderr.isatty(), file=sys.stderr
    ) as bar:
        count = runner.run_once(progress=bar.update)
    return count, time.perf_counter() - started
