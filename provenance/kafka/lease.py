"""One active relay per topic: a lease that a standby relay takes over when the holder's process dies.

Two relays on one outbox would lose nothing (consumers skip stream versions they already applied), but they
would double the traffic and fight over the stored position. The lease makes the second one a hot standby.

On PostgreSQL the lease is a session advisory lock, held on a connection of its own: the server releases it
when that session ends, so a crashed or partitioned holder lets go without anyone cleaning up. On SQLite
(one machine by nature) it is an exclusive `flock` on a file beside the database, which the kernel releases
when the process dies. The holder checks the lease before every batch; a holder that finds it lost stops
publishing, so at most the batch in flight overlaps with the successor's first one.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import threading
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from provenance.kafka.errors import RelayError

_LOCAL_LOCKS: dict[str, threading.Lock] = {}
_LOCAL_GUARD = threading.Lock()


class Lease:
    """An exclusive, non-blocking lease named `name` in the database behind `engine`."""

    def __init__(self, engine: Engine, name: str) -> None:
        self.engine = engine
        self.name = name
        self._held: Any = None
        dialect = engine.dialect.name
        if dialect not in ("postgresql", "sqlite"):
            raise RelayError(f"no lease for a {dialect} database (use PostgreSQL or SQLite)")

    @property
    def held(self) -> bool:
        return self._held is not None

    def try_acquire(self) -> bool:
        """Take the lease if nobody holds it; True when this object holds it afterwards."""
        if self._held is None:
            self._held = self._acquire()
        return self._held is not None

    def still_held(self) -> bool:
        """Whether the lease is still ours (on PostgreSQL: whether its session is alive); drops it if not."""
        if self._held is None:
            return False
        if self.engine.dialect.name != "postgresql":
            return True
        try:
            self._held.execute(sa.text("SELECT 1"))
        except sa.exc.SQLAlchemyError:
            self.release()
            return False
        return True

    def release(self) -> None:
        held, self._held = self._held, None
        if held is None:
            return
        if isinstance(held, int):
            os.close(held)  # closing the descriptor drops the flock
        elif not isinstance(held, sa.Connection):
            held.release()  # the in-process lock
        else:
            with contextlib.suppress(sa.exc.SQLAlchemyError):
                held.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": self._key()})
            with contextlib.suppress(sa.exc.SQLAlchemyError):
                held.close()

    def _acquire(self) -> Any:
        if self.engine.dialect.name == "postgresql":
            conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            try:
                if conn.execute(sa.text("SELECT pg_try_advisory_lock(:key)"), {"key": self._key()}).scalar():
                    return conn
            except BaseException:
                conn.close()
                raise
            conn.close()
            return None
        database = self.engine.url.database
        if not database or database == ":memory:":
            return self._acquire_in_process()
        return self._acquire_file(Path(database))

    def _key(self) -> int:
        """The advisory lock key: 64 bits of the name's sha256, signed as PostgreSQL's bigint is."""
        return int.from_bytes(hashlib.sha256(f"provenance:{self.name}".encode()).digest()[:8], "big", signed=True)

    def _acquire_file(self, database: Path) -> int | None:
        import fcntl

        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", self.name)
        fd = os.open(f"{database}.{safe}.lease", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _acquire_in_process(self) -> threading.Lock | None:
        """An in-memory database lives in one process: a lock of that process is the whole lease."""
        with _LOCAL_GUARD:
            lock = _LOCAL_LOCKS.setdefault(self.name, threading.Lock())
        return lock if lock.acquire(blocking=False) else None
