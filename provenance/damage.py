"""A database file that is not one, or no longer a whole one: which of the system's databases, and what to do.

SQLite says only "file is not a database" or "database disk image is malformed", never which file; the system
keeps three (the events, the read models, the likeness keys). When an error says a database is damaged, each
of the SQLite files is checked (on this error path only) and the damaged one is named in the message.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from kernel.errors import ProvenanceError, causes
from projections.database import sqlite_path
from provenance.config import Settings

DAMAGED_SQLITE_CODES = frozenset({sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB})
DAMAGED_SQLSTATES = frozenset({"XX001", "XX002"})
"""PostgreSQL's data corrupted and index corrupted."""


class DamagedDatabase(ProvenanceError):
    """A database of the system cannot be read as one: restore it (the read models can be rebuilt instead)."""

    exit_code = 6


def is_damaged(exc: BaseException) -> bool:
    """True when the error (or one it came from) says a database's file is corrupt or not a database at all."""
    return _damage(exc) is not None


def _damage(exc: BaseException) -> BaseException | None:
    """The driver's own error saying a database is damaged, in the chain the error came from; else None."""
    for link in causes(exc, implicit=True):
        if (
            isinstance(link, sqlite3.DatabaseError)
            and getattr(link, "sqlite_errorcode", 0) & 0xFF in DAMAGED_SQLITE_CODES
        ):
            return link
        if getattr(link, "sqlstate", None) in DAMAGED_SQLSTATES:
            return link
    return None


def describe_damage(settings: Settings, exc: BaseException) -> DamagedDatabase:
    """The error to show for a damaged database: the file found damaged, else every database it may be."""
    said = " ".join(str(_damage(exc) or exc).split())[:300]
    events = settings.events_path if settings.event_store == "sqlite" else None
    projections = sqlite_path(settings.projections_database)
    keys = sqlite_path(settings.keys_database)
    found = [
        path
        for path in (events, Path(projections) if projections else None, Path(keys) if keys else None)
        if path is not None and _sqlite_damaged(path)
    ]
    advice = {
        events: "restore it from a backup (the events are the record: nothing else holds them)",
        Path(projections) if projections else None: (
            "restore it from a backup, or move it away and run `provenance rebuild` to rebuild the read models "
            "from the log"
        ),
        Path(keys) if keys else None: "restore it from a backup (the likeness keys exist nowhere else)",
    }
    if found:
        named = "; ".join(f"the database {path} is damaged: {advice[path]}" for path in found)
        return DamagedDatabase(f"{named} ({said})")
    places = [
        str(events) if events else redacted(settings.postgres_dsn or ""),
        projections or redacted(settings.projections_database),
        keys or redacted(settings.keys_database),
    ]
    return DamagedDatabase(
        f"a database is damaged ({said}); it is one of {', '.join(places)}: restore it from a backup "
        "(the read models can be rebuilt from the log instead: `provenance rebuild`)"
    )


def _sqlite_damaged(path: Path) -> bool:
    """Whether the SQLite file cannot be read whole: its header, its schema, or a quick check of its pages."""
    if not path.is_file():
        return False
    try:
        conn = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True, timeout=5)
    except sqlite3.Error:
        return False
    try:
        conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
        return bool(conn.execute("PRAGMA quick_check(1)").fetchone()[0] != "ok")
    except sqlite3.DatabaseError as exc:
        return is_damaged(exc)
    finally:
        conn.close()


def redacted(url: str) -> str:
    """A database URL as it may be shown: without its password."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        netloc = parts.netloc.rpartition("@")
        user = netloc[0].partition(":")[0]
        return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[2]}"))
    except ValueError:
        return url.partition("://")[0] + "://..."
