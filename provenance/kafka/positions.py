"""Positions of the relay and the workers, kept in the projections database next to the projections' own.

The database, not Kafka's committed offsets, is the source of truth for how far every consumer got: a
projection writes its offsets in the transaction that writes its rows, and the relay and the workers use the
same `checkpoints` table so that one query shows the whole pipeline's progress.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from projections.framework import ProjectionStore, read_checkpoint, write_checkpoint
from projections.store import open_store

T = TypeVar("T")


def creating_tables(make: Callable[[], T], attempts: int = 5) -> T:
    """Run something that creates tables, again if another role created the same ones at the same moment.

    Roles of a fresh stack start together against an empty database; `CREATE TABLE` racing another one
    fails on the loser with "already exists" (SQLite) or a duplicate catalogue key (PostgreSQL).
    """
    for attempt in range(attempts):
        try:
            return make()
        except sa.exc.DatabaseError as exc:
            text = str(exc).lower()
            if attempt == attempts - 1 or ("already exists" not in text and "duplicate key" not in text):
                raise
            time.sleep(0.1 * (attempt + 1))
    raise AssertionError("unreachable")


def open_engine(url: str) -> Engine:
    """An engine on the projections database with the checkpoint tables in place."""
    return creating_tables(lambda: ProjectionStore(url, [])).engine


def open_projections(url: str) -> ProjectionStore:
    return creating_tables(lambda: open_store(url))


class Positions:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def get(self, consumer: str, source: str, partition: int = 0) -> int | None:
        with self.engine.connect() as conn:
            return read_checkpoint(conn, consumer, source, partition)

    def set(self, consumer: str, source: str, partition: int, position: int) -> None:
        with self.engine.begin() as conn:
            write_checkpoint(conn, consumer, source, partition, position)
