"""The events this process recorded last, by notification id: what the embedded read side reads first.

A command's catch-up would otherwise read back from the store, and decode again, the events the command has
just written (a revocation cascade writes thousands). Only a run that follows on from the reader's position
without a gap is taken from here, so an event recorded meanwhile by another process (whose id falls in between)
is never skipped: the reader goes to the store for it, and for whatever it cannot find here.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from eventsourcing.persistence import Recording

CAPACITY = 10_000
"""Events kept: as many as the embedded runner reads at once (`provenance.runner.BATCH_SIZE`)."""


class RecentEvents:
    """The last `capacity` events recorded through this application object, with their notification ids.

    The events are the recorded objects themselves, not copies: their payloads are shared with whatever read
    them, and every consumer treats an event as read-only.
    """

    def __init__(self, capacity: int = CAPACITY) -> None:
        self.capacity = capacity
        self._events: OrderedDict[int, tuple[Any, str]] = OrderedDict()
        self._lock = threading.Lock()  # commands on several threads, the runner on another

    def add(self, recordings: Sequence[Recording[Any]]) -> None:
        """Keep what a committed transaction recorded."""
        with self._lock:
            for recording in recordings:
                notification = recording.notification
                self._events[notification.id] = (recording.domain_event, notification.topic)
            while len(self._events) > self.capacity:
                self._events.popitem(last=False)

    def after(self, position: int, limit: int) -> list[tuple[int, Any, str]]:
        """(notification id, event, stored topic) for ids position + 1, position + 2, ... as far as they are
        all here, up to `limit`; empty when the next one is not."""
        found: list[tuple[int, Any, str]] = []
        with self._lock:
            events = self._events
            position += 1
            while len(found) < limit and (kept := events.get(position)) is not None:
                found.append((position, *kept))
                position += 1
        return found
