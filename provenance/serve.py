"""`provenance serve`: the processes of the distributed mode, one or several roles per process.

Each role is a loop over Kafka (see `provenance.kafka.roles`) that stops cleanly on SIGTERM or SIGINT. The
gate workers are the same `GateWorkers` the embedded runner uses; only the source of events changes.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Sequence

from provenance.bootstrap import System

log = logging.getLogger(__name__)


def serve(system: System, roles: Sequence[str], stop: threading.Event | None = None) -> int:
    from provenance.kafka.roles import run_projection_consumer, run_relay, run_worker_consumer

    stop = stop or threading.Event()
    targets: list[tuple[str, Callable[[], None]]] = []
    for role in dict.fromkeys(roles):
        if role == "relay":
            targets.append((role, lambda: run_relay(system, stop)))
        elif role == "projections":
            targets.append((role, lambda: run_projection_consumer(system, stop)))
        else:
            handler = system.worker_handler(role)
            targets.append((role, lambda r=role, h=handler: run_worker_consumer(system, stop, r, h)))  # type: ignore[misc]
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    threads = [threading.Thread(target=run, name=role, daemon=True) for role, run in targets]
    for thread in threads:
        thread.start()
    log.info("serving %s", ", ".join(role for role, _ in targets))
    while any(t.is_alive() for t in threads):
        for thread in threads:
            thread.join(timeout=0.5)
        if not all(t.is_alive() for t in threads):
            stop.set()  # one role died: stop the others so the supervisor restarts the process
    return 0
