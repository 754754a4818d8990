"""Waiting out an outage: exponential backoff that a stop request interrupts at once."""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field


@dataclass
class Backoff:
    initial_s: float = 0.5
    maximum_s: float = 30.0
    _next_s: float = field(default=0.0, init=False)

    def reset(self) -> None:
        self._next_s = 0.0

    def wait(self, stop: threading.Event) -> float:
        """Sleep the next delay (doubling, with jitter so restarted workers do not retry in step)."""
        self._next_s = min(self.maximum_s, self._next_s * 2 if self._next_s else self.initial_s)
        delay = self._next_s * random.uniform(0.8, 1.2)
        stop.wait(delay)
        return delay
