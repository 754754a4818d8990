"""Liveness of a role, for container health checks: the role's loop touches a file, the check reads its age.

A file per role and host, under the data directory, so replicas sharing a volume do not vouch for each
other. `python -m provenance.kafka.health ROLE [--max-age SECONDS]` exits 0 while the loop is turning.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time
from pathlib import Path


def heartbeat_path(home: Path, role: str) -> Path:
    return home / "health" / f"{role}-{socket.gethostname()}"


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


def age_s(path: Path) -> float | None:
    try:
        return time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return None


def main(argv: list[str] | None = None) -> int:
    from provenance.config import Settings

    parser = argparse.ArgumentParser(prog="python -m provenance.kafka.health", description=__doc__)
    parser.add_argument("role")
    parser.add_argument("--max-age", type=float, default=60.0, help="seconds since the last beat (default 60)")
    args = parser.parse_args(argv)
    path = heartbeat_path(Settings.from_env().home, args.role)
    age = age_s(path)
    if age is None:
        print(f"{args.role}: no heartbeat yet at {path}", file=sys.stderr)
        return 1
    if age > args.max_age:
        print(f"{args.role}: last heartbeat {age:.0f} s ago (limit {args.max_age:.0f} s)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
