"""Errors of the distributed mode, and which failures are worth waiting out rather than parking."""

from __future__ import annotations

from pathlib import Path

from kernel.errors import ProvenanceError, causes


class KafkaNotConfigured(ProvenanceError):
    """A distributed role was started without a broker to talk to."""

    exit_code = 2


class RelayError(ProvenanceError):
    """A batch was not acknowledged by the broker; the relay will send it again from its stored position."""

    exit_code = 7


class TopicError(ProvenanceError):
    """The event topic could not be created or does not look as the relay needs it."""

    exit_code = 7


class ParkedEventNotFound(ProvenanceError):
    """A parked event id that names nothing in the dead-letter table."""

    exit_code = 3


class TransientFailure(ProvenanceError):
    """A store was unreachable while handling a batch: retry the batch later, do not park its events."""

    exit_code = 7


class StorageFailure(TransientFailure):
    """A store could not write to its disk (full, failing or read-only): retried like an outage, but what a person
    sees says so, with exit 6 (an operation failed), instead of blaming the network."""

    exit_code = 6


def _psycopg_failures() -> tuple[type[BaseException], ...]:
    try:
        import psycopg
    except ImportError:  # the postgres extra is not installed: nothing of it can fail
        return ()
    return (psycopg.OperationalError, psycopg.InterfaceError)


_SQLITE_STORAGE = {
    "database or disk is full": "no space left on device",
    "disk i/o error": "a database file could not be written (disk I/O error)",
    "attempt to write a readonly database": "a database file is read-only",
}


def storage_failure(exc: BaseException, where: Path | None = None) -> str | None:
    """What went wrong, when a write failed on the disk rather than on a server or the data: no space left
    (ENOSPC, a quota, SQLite's "database or disk is full", PostgreSQL's 53100), SQLite's disk I/O error (the
    disk full or failing) or a read-only database file. None for anything else. `where` is the data directory,
    named in the answer (and asked for its free space when SQLite reports only an I/O error)."""
    import errno
    import shutil

    from kernel.blobstore import OUT_OF_SPACE

    place = f": {where}" if where is not None else ""
    for link in causes(exc):
        if isinstance(link, OSError) and link.errno in OUT_OF_SPACE:
            return f"no space left on device: {link.filename or where or 'a file being written'}"
        if getattr(link, "sqlstate", None) == "53100":
            return "no space left on device: the PostgreSQL server's disk (disk_full)"
        if isinstance(link, OSError) and link.errno in (errno.EIO, errno.EROFS):
            return f"cannot write {link.filename or where or 'a file'}: {link.strerror or link}"
        message = str(link).lower()
        for words, meaning in _SQLITE_STORAGE.items():
            if type(link).__module__ == "sqlite3" and words in message:
                if words == "disk i/o error" and where is not None:  # SQLite's only word for a full disk, at times
                    try:
                        if shutil.disk_usage(where).free < 1 << 20:
                            return f"no space left on device{place}"
                    except OSError:
                        pass
                return f"{meaning}{place}"
    return None


def is_transient(exc: BaseException) -> bool:
    """True for failures of the infrastructure (a database down or locked, a full disk), not of the event itself.

    Those must not park events: parking every event that arrives while PostgreSQL restarts would empty the
    read models of a whole outage. The batch is retried from the stored position instead.
    """
    import sqlite3

    import sqlalchemy.exc as sa_exc
    from eventsourcing import persistence as es

    from kernel.blobstore import OUT_OF_SPACE

    transient: tuple[type[BaseException], ...] = (
        sqlite3.OperationalError,  # the read side's own driver calls (`projections.database`)
        *_psycopg_failures(),
        sa_exc.OperationalError,
        sa_exc.InterfaceError,
        sa_exc.DisconnectionError,
        sa_exc.TimeoutError,
        es.OperationalError,
        es.InterfaceError,
        ConnectionError,
        TimeoutError,
        TransientFailure,
    )
    chain = causes(exc)
    if any(isinstance(link, OSError) and link.errno in OUT_OF_SPACE for link in chain):
        return True  # a full disk: waited out like PostgreSQL's own disk_full (class 53), never parked
    states = [s for s in (getattr(link, "sqlstate", None) for link in chain) if isinstance(s, str)]
    if states:  # the database said what went wrong: believe it, whatever class its driver filed it under
        return states[0][:2] in TRANSIENT_SQLSTATE_CLASSES or states[0] in TRANSIENT_SQLSTATES
    return any(isinstance(link, transient) for link in chain)


TRANSIENT_SQLSTATE_CLASSES = frozenset({"08", "53", "57", "58"})
"""PostgreSQL's classes of errors of the server rather than of the statement: connection exceptions, insufficient
resources, operator intervention (a shutdown, a cancelled query), system errors. A statement the server refuses
for good (a value past an index's row size, a NUL in text) is an error of the event, and parks it."""
TRANSIENT_SQLSTATES = frozenset({"40001", "40P01", "55P03"})
"""Serialization failures, deadlocks and lock time-outs: the same statement succeeds when it is tried again."""
