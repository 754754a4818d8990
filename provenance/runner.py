"""The embedded runner: follows the notification log in-process and feeds consumers.

Consumers are the projections and the gate workers, behind the same interface the Kafka consumers use:
`handle(batch, source, partition)` with the batch's positions on the envelopes, and `checkpoint(source,
partition)` to resume from. SQLite has no push subscription, so the runner polls the log (`read_log`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Protocol

from kernel.memory import no_cyclic_collection
from projections.framework import ProjectionStore
from provenance.application import ProvenanceApp
from provenance.freshness import LOG_SOURCE
from provenance.log import last_position, read_log
from schemas.envelope import EventEnvelope


class Consumer(Protocol):
    name: str

    def checkpoint(self, source: str, partition: int) -> int | None: ...

    def handle(self, batch: Sequence[EventEnvelope], source: str, partition: int) -> None: ...


class ProjectionConsumer:
    """All projections of a store as one consumer; each projection still keeps its own checkpoint.

    An event a projection cannot apply is parked with the reason (`provenance parked list`) and the log goes
    on, as in the distributed mode: one bad event never takes the read side away.
    """

    name = "projections"

    def __init__(self, store: ProjectionStore) -> None:
        from provenance.kafka.sinks import ProjectionSink

        self.store = store
        # The notification log delivers each event once, in order: the store can trust that (see `process`).
        self.sink = ProjectionSink(store, ordered=True)

    def checkpoint(self, source: str, partition: int) -> int | None:
        positions = [self.store.checkpoint(name, source, partition) for name in self.store.projections]
        if any(p is None for p in positions):
            return None
        return min(p for p in positions if p is not None)

    def handle(self, batch: Sequence[EventEnvelope], source: str, partition: int) -> None:
        self.sink.apply_envelopes(batch, source, partition)


BATCH_SIZE = 10_000
"""Events read from the log at once and handed to each consumer as one batch (a transaction per projection).

Large enough that a revocation cascade of thousands of takedowns, recorded in one transaction, reaches the
feed in one batch too, and the feed (the first projection) drops all of it before the others are written."""


class EmbeddedRunner:
    def __init__(self, app: ProvenanceApp, consumers: Sequence[Consumer], batch_size: int = BATCH_SIZE) -> None:
        self.app = app
        self.consumers = list(consumers)
        self.batch_size = batch_size

    def run_once(self, progress: Callable[[int], None] | None = None) -> int:
        """Feed every consumer until it has seen the whole log as it is now; returns events read."""
        total = 0
        for consumer in self.consumers:
            position = consumer.checkpoint(LOG_SOURCE, 0) or 0
            while True:
                with no_cyclic_collection():
                    batch = read_log(self.app, position, self.batch_size)
                    if not batch:
                        break
                    consumer.handle(batch, LOG_SOURCE, 0)
                position = batch[-1].position or position
                total += len(batch)
                if progress is not None:
                    progress(len(batch))
        return total

    def run_until_idle(self, progress: Callable[[int], None] | None = None) -> int:
        """Run until a pass finds nothing new: workers' results are themselves events to consume."""
        total = 0
        while read := self.run_once(progress):
            total += read
        return total

    def run_forever(self, stop: threading.Event, poll_interval: float = 0.1) -> None:
        """Follow the log until `stop` is set; a crash is resumed from each consumer's stored checkpoint."""
        while not stop.is_set():
            if self.run_once() == 0:
                stop.wait(poll_interval)

    def lag(self) -> int:
        head = last_position(self.app)
        return max(head - (c.checkpoint(LOG_SOURCE, 0) or 0) for c in self.consumers) if self.consumers else 0
