"""Bulk reads and writes through the database driver: plain tuples, one statement per table and batch.

On a rebuild, SQLAlchemy's per-row parameter handling cost more than the database did. These statements
are the same upserts; each value is converted exactly as SQLAlchemy's own bind processor for the column
would convert it, except the two conversions that dominate (JSON columns and SQLite timestamps), which
are done faster with the same stored meaning and are checked against SQLAlchemy's result where it matters.
Rows a batch changes are read back the same way: the driver's tuples, each value through SQLAlchemy's own
result processor for its column, without building a compiled statement and a result row for each.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Dialect

Converter = Callable[[Any], Any]

# Types orjson writes natively but the standard library refuses: let them fail over to the slow path,
# which raises exactly the error SQLAlchemy would have raised.
_ORJSON_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_SUBCLASS


class TableWriter:
    """An upsert (or insert-ignoring-duplicates) of whole rows of one table, for one dialect."""

    def __init__(self, dialect: Dialect, table: sa.Table, keys: Sequence[str], replace: bool) -> None:
        names = [c.name for c in table.columns]
        quote = dialect.identifier_preparer.quote
        into = f"{dialect.identifier_preparer.format_table(table)} ({', '.join(quote(n) for n in names)})"
        mark = "?" if dialect.paramstyle == "qmark" else "%s"
        values = f"VALUES ({', '.join([mark] * len(names))})"
        if replace:
            updates = [f"{quote(n)} = excluded.{quote(n)}" for n in names if n not in keys]
            target = ", ".join(quote(k) for k in keys)
            action = f"DO UPDATE SET {', '.join(updates)}" if updates else "DO NOTHING"
            self.sql = f"INSERT INTO {into} {values} ON CONFLICT ({target}) {action}"
        elif dialect.name == "postgresql":
            self.sql = f"INSERT INTO {into} {values} ON CONFLICT DO NOTHING"
        else:
            self.sql = f"INSERT OR IGNORE INTO {into} {values}"
        self._params = _Parameters(dialect, [table.c[n] for n in names])

    def write(self, conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
        if rows:
            conn.exec_driver_sql(self.sql, self._params(rows))


class ColumnUpdater:
    """An UPDATE of some columns of existing rows, by key, for one dialect (rows that are gone stay gone)."""

    def __init__(self, dialect: Dialect, table: sa.Table, key: str, columns: Sequence[str]) -> None:
        quote = dialect.identifier_preparer.quote
        mark = "?" if dialect.paramstyle == "qmark" else "%s"
        sets = ", ".join(f"{quote(n)} = {mark}" for n in columns)
        self.sql = f"UPDATE {dialect.identifier_preparer.format_table(table)} SET {sets} WHERE {quote(key)} = {mark}"
        self._params = _Parameters(dialect, [*(table.c[n] for n in columns), table.c[key]])

    def write(self, conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
        if rows:
            conn.exec_driver_sql(self.sql, self._params(rows))


class RowReader:
    """Some columns of the rows of one table whose key is among the given ones, for one dialect."""

    CHUNK = 500
    """Keys per statement: well under SQLite's and PostgreSQL's limits on parameters."""

    def __init__(self, dialect: Dialect, table: sa.Table, key: str, columns: Sequence[str]) -> None:
        quote = dialect.identifier_preparer.quote
        self._names = list(columns)
        self._select = (
            f"SELECT {', '.join(quote(n) for n in columns)} FROM {dialect.identifier_preparer.format_table(table)}"
            f" WHERE {quote(key)} IN "
        )
        self._mark = "?" if dialect.paramstyle == "qmark" else "%s"
        self._bind_key = table.c[key].type.dialect_impl(dialect).bind_processor(dialect)
        self._convert: list[tuple[int, Converter]] = []
        for index, name in enumerate(columns):
            processor = table.c[name].type.dialect_impl(dialect).result_processor(dialect, None)
            if processor is not None:
                self._convert.append((index, processor))

    def read(self, conn: Connection, keys: Sequence[Any]) -> list[dict[str, Any]]:
        names, convert = self._names, self._convert
        found: list[dict[str, Any]] = []
        for start in range(0, len(keys), self.CHUNK):
            chunk = keys[start : start + self.CHUNK]
            if self._bind_key is not None:
                chunk = [self._bind_key(k) for k in chunk]
            sql = f"{self._select}({', '.join([self._mark] * len(chunk))})"
            for row in conn.exec_driver_sql(sql, tuple(chunk)).fetchall():
                values = list(row)
                for index, function in convert:
                    values[index] = function(values[index])
                found.append(dict(zip(names, values, strict=True)))
        return found


class _Parameters:
    """Rows (dicts) to driver parameter tuples for the given columns, each value converted for its column."""

    def __init__(self, dialect: Dialect, columns: Sequence[sa.Column[Any]]) -> None:
        names = [c.name for c in columns]
        self._get: Callable[[dict[str, Any]], tuple[Any, ...]] = (
            itemgetter(*names) if len(names) > 1 else (lambda row: (row[names[0]],))
        )
        self._convert: list[tuple[int, Converter]] = []
        for index, column in enumerate(columns):
            converter = _converter(dialect, column)
            if converter is not None:
                self._convert.append((index, converter))

    def __call__(self, rows: Sequence[dict[str, Any]]) -> list[tuple[Any, ...]]:
        get = self._get
        convert = self._convert
        if not convert:
            return [get(row) for row in rows]
        params = []
        for row in rows:
            values = list(get(row))
            for index, function in convert:
                values[index] = function(values[index])
            params.append(tuple(values))
        return params


def _converter(dialect: Dialect, column: sa.Column[Any]) -> Converter | None:
    slow = column.type.dialect_impl(dialect).bind_processor(dialect)
    if slow is None or dialect.name != "sqlite":
        return slow
    if isinstance(column.type, sa.JSON):
        return _json_converter(slow)
    if isinstance(column.type, sa.types.TypeDecorator) and isinstance(column.type.impl_instance, sa.DateTime):
        return _sqlite_datetime_converter(slow)
    return slow


def _json_converter(slow: Converter) -> Converter:
    """orjson where it writes the same JSON value as the standard library, the standard library otherwise."""

    def convert(value: Any) -> Any:
        if value is None:
            return slow(value)
        try:
            encoded = orjson.dumps(value, option=_ORJSON_OPTIONS)
        except TypeError:  # orjson.JSONEncodeError: a type or an integer it does not write
            return slow(value)
        # orjson writes NaN and infinities as null, where the standard library keeps them: a document with a
        # null must read back as the value it was written from (which also sends tuples the slow way). Both
        # steps run in C, at half the cost of walking the value in Python to look for such floats.
        if b"null" in encoded and orjson.loads(encoded) != value:
            return slow(value)
        return encoded.decode()

    return convert


def _sqlite_datetime_converter(slow: Converter) -> Converter:
    """SQLite's text timestamps for UTC datetimes straight from `isoformat`, if that is what SQLAlchemy writes."""
    probe = datetime(2001, 2, 3, 4, 5, 6, 7, tzinfo=UTC)
    if slow(probe) != probe.isoformat(" ", "microseconds")[:26]:
        return slow

    def convert(value: Any) -> Any:
        if type(value) is datetime and value.tzinfo is UTC:
            return value.isoformat(" ", "microseconds")[:26]
        return slow(value)

    return convert
