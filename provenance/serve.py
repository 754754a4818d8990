"""`provenance serve`: the processes of the distributed mode, one or several roles per process.

Each role is a loop over Kafka (see `provenance.kafka.roles`) that stops cleanly on SIGTERM or SIGINT. The
gate workers are the same `GateWorkers` the embedded runner uses; only the source of events changes.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Sequence

from kernel.errors import ProvenanceError, StageFailed
from provenance.bootstrap import System
from provenance.kafka.health import heartbeat_path, keep_beating

log = logging.getLogger(__name__)


def serve(system: System, roles: Sequence[str], stop: threading.Event | None = None) -> int:
    from provenance.kafka.client import bootstrap_of
    from provenance.kafka.roles import (
        run_consent_watch,
        run_generator,
        run_projection_consumer,
        run_relay,
        run_worker_consumer,
    )

    bootstrap_of(system.settings)  # refuse to start, with one line, when no broker is configured
    stop = stop or threading.Event()
    targets: list[tuple[str, Callable[[], None]]] = []
    for role in dict.fromkeys(roles):
        if role == "relay":
            targets.append((role, lambda: run_relay(system, stop)))
        elif role == "projections":
            targets.append((role, lambda: run_projection_consumer(system, stop)))
        elif role == "consent":
            targets.append((role, lambda: run_consent_watch(system, stop)))
        elif role == "generator":
            targets.append((role, lambda: run_generator(system, stop)))
        else:
            handler = system.worker_handler(role)
            targets.append((role, lambda r=role, h=handler: run_worker_consumer(system, stop, r, h)))  # type: ignore[misc]
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    failures: list[str] = []

    def guarded(role: str, run: Callable[[], None]) -> Callable[[], None]:
        def target() -> None:
            try:
                run()
            except Exception as exc:
                log.error("role %s stopped: %s", role, exc, exc_info=not isinstance(exc, ProvenanceError))
                failures.append(role)
                stop.set()

        return target

    threads = [threading.Thread(target=guarded(role, run), name=role, daemon=True) for role, run in targets]
    for thread in threads:
        thread.start()
        # Alive while working: the beat comes from its own thread for as long as the role's thread runs.
        keep_beating(heartbeat_path(system.settings.home, thread.name), thread.is_alive, stop)
    log.info("serving %s", ", ".join(role for role, _ in targets))
    while any(t.is_alive() for t in threads):
        for thread in threads:
            thread.join(timeout=0.5)
        if not all(t.is_alive() for t in threads):
            stop.set()  # one role died: stop the others so the supervisor restarts the process
    if failures:
        raise StageFailed(f"role(s) {', '.join(failures)} stopped with an error (see the log)")
    return 0
