"""Whether the embedded read side has anything to do, answered from the two SQLite files alone.

Every command brings the read models up to date before it reads (`System.catch_up`), and most of the time there
is nothing to do. Answering that must not load the write side (the event store's library, the event schemas,
SQLAlchemy), or a read command could not start in a fraction of a second. Three reads answer it:

- the head of the notification log (eventsourcing's SQLite table numbers events by `rowid`);
- the position of every consumer of the read side (each projection and the consent watch) and of the expiry
  timer, which also notes how far the log had been projected when it last swept;
- any grant whose expiry passed since that sweep.

When the projections hold every event, the last sweep saw every grant and no expiry has passed since, there is
nothing to record and nothing to project. Anything else goes the long way round.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from projections.database import ReadDatabase

LOG_SOURCE = "log"
"""The source name of the embedded notification log in the checkpoints table."""

EXPIRY_TIMER = "timer:expiry"
"""The consent watch's expiry sweep: its `clock` row is when it last swept (microseconds since the epoch),
its `log` row how far the log had been projected then."""
CLOCK_SOURCE = "clock"

READ_SIDE_CONSUMERS = ("feed", "lineage", "consent", "audit", "takedowns", "worker:consent")
"""What follows the log in every embedded process: each projection, then the consent watch."""


def log_head(events_file: Path) -> int | None:
    """The last notification id of the embedded event store; None when it cannot be read this way."""
    if not events_file.is_file():
        return None
    try:
        conn = sqlite3.connect(f"{events_file.absolute().as_uri()}?mode=rw", uri=True, timeout=30)
        try:
            row = conn.execute("SELECT MAX(rowid) FROM stored_events").fetchone()
        finally:
            conn.close()
    except sqlite3.Error:
        return None
    return int(row[0] or 0)


def up_to_date_at(events_file: Path, projections: ReadDatabase, now: datetime) -> int | None:
    """The log head, when the read models are up to date with it and no consent expiry is due; else None."""
    head = log_head(events_file)
    if head is None:
        return None
    listed, params = projections.expand("consumer", (*READ_SIDE_CONSUMERS, EXPIRY_TIMER))
    try:
        rows = projections.rows(
            f"SELECT consumer, source, position FROM checkpoints WHERE consumer IN ({listed}) AND partition = 0",
            params,
        )
        positions = {(row["consumer"], row["source"]): row["position"] for row in rows}
        swept = positions.get((EXPIRY_TIMER, CLOCK_SOURCE))
        if swept is None or any(  # behind the log, or ahead of it (`System` refuses that the long way)
            positions.get((consumer, LOG_SOURCE), -1) != head for consumer in (*READ_SIDE_CONSUMERS, EXPIRY_TIMER)
        ):
            return None
        due = projections.values(
            "SELECT 1 FROM consent_grants WHERE expires_at > :since AND expires_at <= :now"
            " AND revoked_at IS NULL LIMIT 1",
            {"since": datetime.fromtimestamp(swept / 1e6, UTC), "now": now},
        )
    except sqlite3.Error:  # a database from before these tables: the long way creates them
        return None
    return None if due else head


def furthest_log_checkpoint(projections: ReadDatabase) -> tuple[str, int] | None:
    """The consumer that has followed the log the furthest, and its position; None when none has followed it.

    Only the log's own positions count (a Kafka topic's offsets are another numbering). One indexed read.
    """
    rows = projections.rows(
        "SELECT consumer, position FROM checkpoints WHERE source = :log AND partition = 0"
        " ORDER BY position DESC LIMIT 1",
        {"log": LOG_SOURCE},
    )
    return (str(rows[0]["consumer"]), int(rows[0]["position"])) if rows else None
