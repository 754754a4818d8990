"""`provenance serve`: the processes of the distributed mode, one or several roles per process.

Each role is a loop over Kafka (see `provenance.kafka.roles`) that stops cleanly on SIGTERM or SIGINT. The
gate workers are the same `GateWorkers` the embedded runner uses; only the source of events changes.

A role that dies, or whose loop overruns the longest a round of it may take (`Progress`: alive but stuck, as
inside a client call that never returns), stops the process with an error, so that its supervisor starts a
fresh one; until then its heartbeat has stopped, so the health check reports it too.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Sequence
from functools import partial

from kernel.errors import ProvenanceError, StageFailed
from provenance.bootstrap import System
from provenance.kafka.health import Progress, heartbeat_path, keep_beating

log = logging.getLogger(__name__)

STOP_WAIT_S = 15.0
"""How long the other roles of a process whose role got stuck are given to stop cleanly before it exits."""


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
    progress = {role: Progress() for role in roles}
    loops: dict[str, Callable[..., None]] = {
        "relay": run_relay,
        "projections": run_projection_consumer,
        "consent": run_consent_watch,
        "generator": run_generator,
    }
    for role in dict.fromkeys(roles):
        loop = loops.get(role)
        if loop is not None:
            targets.append((role, partial(loop, system, stop, progress=progress[role])))
        else:
            handler = system.worker_handler(role)
            targets.append((role, partial(run_worker_consumer, system, stop, role, handler, progress=progress[role])))
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

    def working(thread: threading.Thread) -> Callable[[], bool]:
        return lambda: thread.is_alive() and not progress[thread.name].overdue()

    threads = [threading.Thread(target=guarded(role, run), name=role, daemon=True) for role, run in targets]
    beats = []
    for thread in threads:
        thread.start()
        # Alive while working: the beat comes from its own thread for as long as the role's thread runs and its
        # loop comes round in time (a render that takes minutes is inside no round of the generator's consumer).
        beats.append(keep_beating(heartbeat_path(system.settings.home, thread.name), working(thread), stop))
    log.info("serving %s", ", ".join(role for role, _ in targets))
    stuck: list[str] = []
    while any(t.is_alive() for t in threads) and not stuck:
        for thread in threads:
            thread.join(timeout=0.5)
        # Once stopping, a role's clean-up (a render finishing, the relay's last acknowledgements) may outlast
        # its last round's allowance: that is a shutdown, not a stuck role.
        if not stop.is_set():
            stuck = [t.name for t in threads if t.is_alive() and progress[t.name].overdue()]
        if stuck or not all(t.is_alive() for t in threads):
            stop.set()  # one role died or is stuck: stop the others so the supervisor restarts the process
    for beat in beats:  # each removes its file as it ends
        beat.join(timeout=STOP_WAIT_S)
    if stuck:
        log.error("role(s) %s stuck: a round of the loop took longer than it may; stopping", ", ".join(stuck))
        for thread in threads:  # the others leave their groups cleanly; a stuck one ends with the process
            if thread.name not in stuck:
                thread.join(timeout=STOP_WAIT_S)
        raise StageFailed(f"role(s) {', '.join(stuck)} stuck: no round of the loop in the time it may take")
    if failures:
        raise StageFailed(f"role(s) {', '.join(failures)} stopped with an error (see the log)")
    return 0
