"""The PostgreSQL event store's recorder: eventsourcing's own, running its definitions one session at a time.

Every process that opens the log runs eventsourcing's table, index and function definitions (`CREATE ... IF NOT
EXISTS`, `CREATE OR REPLACE FUNCTION`). Two sessions replacing the same function at once fail with "tuple
concurrently updated", and a deployment starts several roles at once against one events database. Here the
definitions' transaction first takes a transaction-level advisory lock: a second session waits until the first
commits, then finds everything in place. (`provenance.bootstrap.event_store_env` names this class to
eventsourcing, which loads it only for a PostgreSQL event store.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from eventsourcing.postgres import PostgresApplicationRecorder

if TYPE_CHECKING:
    from psycopg import Cursor
    from psycopg.rows import DictRow

DEFINITIONS_LOCK = int.from_bytes(b"provenan")
"""The advisory lock key the definitions take ("provenan" in ASCII, a positive 64-bit integer)."""


class PostgresLogRecorder(PostgresApplicationRecorder):
    def _create_table(self, curs: Cursor[DictRow]) -> None:
        curs.execute("SELECT pg_advisory_xact_lock(%s)", (DEFINITIONS_LOCK,), prepare=False)
        super()._create_table(curs)
