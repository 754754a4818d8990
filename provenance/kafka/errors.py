"""Errors of the distributed mode, and which failures are worth waiting out rather than parking."""

from __future__ import annotations

from kernel.errors import ProvenanceError


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


def _psycopg_failures() -> tuple[type[BaseException], ...]:
    try:
        import psycopg
    except ImportError:  # the postgres extra is not installed: nothing of it can fail
        return ()
    return (psycopg.OperationalError, psycopg.InterfaceError)


def is_transient(exc: BaseException) -> bool:
    """True for failures of the infrastructure (a database down or locked), not of the event itself.

    Those must not park events: parking every event that arrives while PostgreSQL restarts would empty the
    read models of a whole outage. The batch is retried from the stored position instead.
    """
    import sqlite3

    import sqlalchemy.exc as sa_exc
    from eventsourcing import persistence as es

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
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not seen for seen in chain):
        chain.append(current)
        current = current.__cause__ or getattr(current, "orig", None)  # SQLAlchemy keeps the driver's error
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
