"""Liveness of a role, for health checks: the serving process beats a file per role, the check reads it.

One file per role and process (`health/<role>-<host>-<pid>`), beaten every second by a thread of its own for as
long as the role's thread is alive and its loop keeps coming round (`Progress`), so a render that takes minutes
does not read as dead, a role stuck inside a client call does, and a dead process never vouches for another
replica on the same host. `python -m provenance.kafka.health ROLE [--max-age S]` exits 0 while a live process
of this host beats for the role.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from kernel.processes import is_running


def heartbeat_path(home: Path, role: str, pid: int | None = None) -> Path:
    return home / "health" / f"{role}-{socket.gethostname()}-{pid or os.getpid()}"


class Heartbeat:
    def __init__(self, path: Path, every_s: float = 1.0) -> None:
        self.path = path
        self.every_s = every_s
        self._last = 0.0

    def __call__(self) -> None:
        now = time.monotonic()
        if now - self._last < self.every_s:
            return
        self._last = now
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.touch()
        os.utime(self.path)


STALLED_CONNECT_S = 150.0
"""What a round may take beyond its own limits before it is taken for stuck: a database connection attempt to an
unreachable host waits out the system's TCP timeout (about two minutes) inside a round, and that is an outage
to wait out, not a stuck client."""


class Progress:
    """Whether a role's loop keeps coming round: at the top of each round the loop says how long the round may
    take at most when nothing is wrong (`next_round_within`), and past that the role is `overdue`.

    A thread can be alive and still do nothing: kafka-python can spin for ever in its group coordination when
    the coordinator's connection drops, inside `poll`, never returning to the loop. Such a role stops beating,
    and `provenance serve` stops the process so that its supervisor starts a fresh one.
    """

    def __init__(self) -> None:
        self._deadline: float | None = None

    @property
    def deadline(self) -> float | None:
        """When the current round must end by (`time.monotonic`), None before the first."""
        return self._deadline

    def next_round_within(self, seconds: float) -> None:
        self._deadline = time.monotonic() + seconds

    def overdue(self) -> bool:
        deadline = self._deadline
        return deadline is not None and time.monotonic() > deadline


def keep_beating(path: Path, alive: Callable[[], bool], stop: threading.Event) -> threading.Thread:
    """Beat `path` every second while `alive()` holds and until `stop` is set; the file goes when it ends."""
    beat = Heartbeat(path)

    def run() -> None:
        try:
            while not stop.is_set() and alive():
                beat()
                stop.wait(1.0)
        finally:
            path.unlink(missing_ok=True)

    thread = threading.Thread(target=run, name=f"heartbeat:{path.name}", daemon=True)
    thread.start()
    return thread


def age_s(path: Path) -> float | None:
    try:
        return time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return None


def live_beats(home: Path, role: str) -> list[tuple[int, float]]:
    """(pid, age in seconds) of this host's processes beating for the role; files of dead processes are removed."""
    found: list[tuple[int, float]] = []
    for path in (home / "health").glob(f"{role}-{socket.gethostname()}-*"):
        pid = path.name.rpartition("-")[2]
        if not pid.isdigit():
            continue
        if not is_running(int(pid)):
            path.unlink(missing_ok=True)
            continue
        age = age_s(path)
        if age is not None:
            found.append((int(pid), age))
    return found


def main(argv: list[str] | None = None) -> int:
    from provenance.config import Settings

    parser = argparse.ArgumentParser(prog="python -m provenance.kafka.health", description=__doc__)
    parser.add_argument("role")
    parser.add_argument("--max-age", type=float, default=15.0, help="seconds since the last beat (default 15)")
    args = parser.parse_args(argv)
    beats = live_beats(Settings.from_env().home, args.role)
    if not beats:
        print(f"{args.role}: no live process beats on this host", file=sys.stderr)
        return 1
    freshest = min(age for _, age in beats)
    if freshest > args.max_age:
        print(f"{args.role}: last heartbeat {freshest:.0f} s ago (limit {args.max_age:.0f} s)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
