"""Connections for reading the read models: the DB-API drivers themselves, without SQLAlchemy.

Reading is what the command line and the HTTP service do most, and a read command must start in a fraction of
a second: SQLAlchemy alone takes longer than that to import. The projections write through SQLAlchemy (its
tables, upserts and schema creation); everything that only reads goes through here, on `sqlite3` or
`psycopg`, and gets the same Python values back: SQLite's declared column types (`DATETIME`, `JSON`,
`BOOLEAN`, as SQLAlchemy creates them) are converted as the row is read, PostgreSQL's arrive typed.

Queries use `:name` parameters on both. Each thread gets its own connection (the HTTP service reads from
many), every statement sees the latest committed rows, and a PostgreSQL connection that broke is replaced on
the next call.
"""

from __future__ import annotations

import contextlib
import json
import re
import sqlite3
import threading
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, overload

from kernel.errors import InvalidInput

DATABASE_URLS = ("sqlite:///", "postgresql://", "postgresql+psycopg://")
"""How the read models' database may be named: a SQLite file or a PostgreSQL database."""

SQLITE_TABLES_READY = 1
"""The `user_version` of a SQLite read-model file once every read model's tables are in it.

Opening a database file creates it, empty, before its tables are; another process may look in between. The
store sets this last, so a reader that finds it knows every table is there without knowing their names."""

_NAMED = re.compile(r"(?<![:\w]):(\w+)")
_converters_registered = False


def _register_sqlite_converters() -> None:
    """How SQLAlchemy's SQLite columns read back (`sqlite3` keeps converters per process, by type name)."""
    global _converters_registered
    if not _converters_registered:
        sqlite3.register_converter("DATETIME", _sqlite_datetime)
        sqlite3.register_converter("JSON", lambda raw: json.loads(raw))
        sqlite3.register_converter("BOOLEAN", lambda raw: raw not in (b"0", b""))
        _converters_registered = True


def _sqlite_datetime(raw: bytes) -> datetime:
    return datetime.fromisoformat(raw.decode()).replace(tzinfo=UTC)


@overload
def utc(value: datetime) -> datetime: ...
@overload
def utc(value: None) -> None: ...
def utc(value: datetime | None) -> datetime | None:
    """Everything is stored in UTC; SQLite and a PostgreSQL `timestamp` hand it back without a zone."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def sqlite_path(url: str) -> str | None:
    """The file of a `sqlite:///PATH` URL; None for any other database."""
    if not url.startswith("sqlite:///"):
        return None
    return url[len("sqlite:///") :].split("?", 1)[0]


class ReadDatabase:
    """Read-only use of the projections' database at `url` (`sqlite:///PATH` or `postgresql[+psycopg]://...`)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.path = sqlite_path(url)
        if not url.startswith(DATABASE_URLS):
            raise InvalidInput(f"the read models need a SQLite file or a PostgreSQL database, not {url!r}")
        self._local = threading.local()
        self._opened: list[Any] = []
        self._lock = threading.Lock()

    def rows(self, sql: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """Every row of a query, as dicts by column name."""
        conn = self._connection()
        try:
            cursor = conn.execute(self._statement(sql), self._bound(params or {}))
            names = [column[0] for column in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
        except Exception:
            if getattr(conn, "broken", False) or getattr(conn, "closed", False):
                self._forget(conn)
            raise

    def values(self, sql: str, params: Mapping[str, Any] | None = None) -> list[Any]:
        """The first column of every row."""
        return [next(iter(row.values())) for row in self.rows(sql, params)]

    def sqlite_tables_ready(self) -> bool:
        """Whether this is a SQLite file that exists and has every read model's tables (`SQLITE_TABLES_READY`)."""
        if self.path is None:
            return False
        try:
            return self.values("PRAGMA user_version") == [SQLITE_TABLES_READY]
        except sqlite3.Error:  # no such file yet
            return False

    def close(self) -> None:
        with self._lock:
            opened, self._opened = self._opened, []
        for conn in opened:
            conn.close()
        self._local = threading.local()

    # --- parameters ----------------------------------------------------------------------------------------

    @staticmethod
    def expand(name: str, values: Iterable[Any]) -> tuple[str, dict[str, Any]]:
        """`:name0, :name1, ...` and their values, for an `IN (...)` list."""
        bound = {f"{name}{i}": value for i, value in enumerate(values)}
        return ", ".join(f":{key}" for key in bound), bound

    def _bound(self, params: Mapping[str, Any]) -> dict[str, Any]:
        # SQLAlchemy stores SQLite datetimes as UTC text that sorts as time does; compare in the same form.
        if self.path is None:
            return dict(params)
        return {key: _sqlite_time(value) if isinstance(value, datetime) else value for key, value in params.items()}

    def _statement(self, sql: str) -> str:
        return sql if self.path is not None else _NAMED.sub(r"%(\1)s", sql)

    # --- connections ---------------------------------------------------------------------------------------

    def _connection(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
            with self._lock:
                self._opened.append(conn)
        return conn

    def _connect(self) -> Any:
        if self.path is not None:
            _register_sqlite_converters()
            uri = f"{Path(self.path).absolute().as_uri()}?mode=rw"  # never creates an empty database
            conn = sqlite3.connect(
                uri, uri=True, timeout=30, detect_types=sqlite3.PARSE_DECLTYPES, check_same_thread=False
            )
            conn.isolation_level = None  # autocommit: each query sees the latest committed rows
            return conn
        from kernel.errors import require

        require("psycopg", "postgres")
        import psycopg

        url = self.url.replace("postgresql+psycopg://", "postgresql://", 1)
        return psycopg.connect(url, autocommit=True, connect_timeout=5)

    def _forget(self, conn: Any) -> None:
        if getattr(self._local, "conn", None) is conn:
            self._local.conn = None
        with self._lock:
            if conn in self._opened:
                self._opened.remove(conn)
        with contextlib.suppress(Exception):  # it is broken already
            conn.close()


def _sqlite_time(value: datetime) -> str:
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.strftime("%Y-%m-%d %H:%M:%S.%f")
