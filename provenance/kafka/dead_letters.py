"""Parked events: what a consumer could not handle, kept with the reason and the raw bytes, and replayed.

A poison message must not block its partition (every later event of every stream on it would wait), and it
must not be lost either. It is parked in the projections database, its offset counts as processed, and an
operator replays it once the cause is fixed (a consumer upgraded to a new schema version, a bug fixed).
Parking is idempotent per (consumer, source, partition, position), so a redelivered poison message is
parked once. The embedded mode can park into the same table.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlmodel import SQLModel

from projections.database import utc
from projections.framework import ProjectionStore, table_of
from projections.tables import ParkedEvent
from provenance.kafka.errors import ParkedEventNotFound
from provenance.kafka.positions import creating_tables
from schemas.catalogue import InvalidEvent, check
from schemas.envelope import EventEnvelope

log = logging.getLogger(__name__)

MAX_REASON = 2000
MAX_EVENT_ID = 100
"""The most of a malformed message's `event_id` kept beside it (the whole message is kept too)."""

Replayer = Callable[[EventEnvelope], bool]
"""Applies a parked event again: True when it took effect, False when it no longer can (superseded)."""


@dataclass(frozen=True)
class Parked:
    id: int
    consumer: str
    source: str
    partition: int
    position: int
    event_id: str | None
    reason: str
    raw: bytes
    parked_at: datetime
    replayed_at: datetime | None

    @property
    def pending(self) -> bool:
        return self.replayed_at is None


@dataclass(frozen=True)
class ReplayResult:
    id: int
    status: Literal["replayed", "failed", "superseded"]
    detail: str


def one_line(text: str, limit: int = MAX_REASON) -> str:
    """One line of printable text (others escaped: no store refuses it), at most `limit` characters."""
    flat = "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in " ".join(text.split()))
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def decode(raw: bytes | None, position: int | None = None) -> EventEnvelope:
    """A message from the log as a checked envelope at the current schema version; `InvalidEvent` if not."""
    if raw is None:
        raise InvalidEvent("empty message (no value)")
    return check(EventEnvelope.from_json(raw, position))


class DeadLetters:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.table = table_of(ParkedEvent)
        creating_tables(lambda: SQLModel.metadata.create_all(engine, tables=[self.table]))

    def park(
        self,
        consumer: str,
        source: str,
        partition: int,
        position: int,
        raw: bytes | None,
        reason: str,
        event_id: str | None = None,
    ) -> bool:
        """Park one message; False when it was already parked (a redelivery)."""
        with self.engine.begin() as conn:
            return self.park_in(conn, consumer, source, partition, position, raw, reason, event_id)

    def park_in(
        self,
        conn: Connection,
        consumer: str,
        source: str,
        partition: int,
        position: int,
        raw: bytes | None,
        reason: str,
        event_id: str | None = None,
    ) -> bool:
        t = self.table
        exists = conn.execute(
            sa.select(t.c.id).where(
                t.c.consumer == consumer, t.c.source == source, t.c.partition == partition, t.c.position == position
            )
        ).first()
        if exists is not None:
            return False
        conn.execute(
            t.insert().values(
                consumer=consumer,
                source=source,
                partition=partition,
                position=position,
                event_id=one_line(event_id, MAX_EVENT_ID) if event_id is not None else None,  # as the message said
                reason=one_line(reason),
                raw=raw or b"",
                parked_at=datetime.now(UTC),
                replayed_at=None,
            )
        )
        log.warning(
            "%s parked the event at %s[%d]@%d%s: %s",
            consumer,
            source,
            partition,
            position,
            f" ({event_id})" if event_id else "",
            one_line(reason),
        )
        return True

    def entries(
        self, consumer: str | None = None, *, include_replayed: bool = False, limit: int | None = None
    ) -> list[Parked]:
        t = self.table
        query = sa.select(t).order_by(t.c.id)
        if consumer is not None:
            query = query.where(t.c.consumer == consumer)
        if not include_replayed:
            query = query.where(t.c.replayed_at.is_(None))
        if limit is not None:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            return [_parked(row) for row in conn.execute(query).mappings()]

    def get(self, parked_id: int) -> Parked:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(self.table).where(self.table.c.id == parked_id)).mappings().first()
        if row is None:
            raise ParkedEventNotFound(f"no parked event with id {parked_id}")
        return _parked(row)

    def replay(
        self, consumer: str, apply: Replayer, ids: Iterable[int] | None = None, formerly: Sequence[str] = ()
    ) -> list[ReplayResult]:
        """Check and apply the consumer's pending parked events again (the named ones, or all), oldest first;
        with those it parked under the names it had `formerly`.

        An event that now passes is marked replayed; one that still fails stays parked, and its result says
        why. Events parked by another consumer are refused: their handler is not this one.
        """
        names = (consumer, *formerly)
        found = [p for name in names for p in self.entries(name)] if ids is None else map(self.get, set(ids))
        return [self._replay_one(names, parked, apply) for parked in sorted(found, key=lambda p: p.id)]

    def _replay_one(self, names: Sequence[str], parked: Parked, apply: Replayer) -> ReplayResult:
        consumer = names[0]
        if parked.consumer not in names:
            return ReplayResult(parked.id, "failed", f"parked by {parked.consumer}, not {consumer}")
        if not parked.pending:
            return ReplayResult(parked.id, "replayed", f"already replayed at {parked.replayed_at}")
        try:
            envelope = decode(parked.raw, parked.position)
            took_effect = apply(envelope)
        except Exception as exc:  # the replay of one event reports its failure and leaves it parked
            return ReplayResult(parked.id, "failed", one_line(str(exc) or repr(exc)))
        if not took_effect:
            return ReplayResult(
                parked.id,
                "superseded",
                f"a later event of stream {envelope.stream_id} was applied since: rebuild to include this one",
            )
        with self.engine.begin() as conn:
            conn.execute(self.table.update().where(self.table.c.id == parked.id).values(replayed_at=datetime.now(UTC)))
        return ReplayResult(parked.id, "replayed", f"{envelope.event_type} {envelope.event_id}")


def handler_replayer(handler: Callable[[EventEnvelope], None]) -> Replayer:
    """A worker's handler as a replayer: its commands are idempotent, so running it is taking effect."""

    def apply(envelope: EventEnvelope) -> bool:
        handler(envelope)
        return True

    return apply


def projection_replayer(store: ProjectionStore) -> Replayer:
    """Applies a parked event to the projections outside any partition's checkpoint.

    Its own source (`replay:<event id>`) has no checkpoint and the envelope no position, so the checkpoints
    of the log stay as they are; the per-stream version check still holds, so an event whose stream moved
    on since in any projection is reported as superseded rather than applied out of order. A projection that
    holds this very version already (the feed, which commits ahead of the others, when another failed) has it.
    """

    def apply(envelope: EventEnvelope) -> bool:
        wanting = [p.name for p in store.projections.values() if envelope.event_type in p.event_types]
        held = store.applied_versions(envelope.stream_id, wanting)
        if any(version > envelope.stream_version for version in held.values()):
            return False
        applied = store.process([replace(envelope, position=None)], f"replay:{envelope.event_id}", 0)
        return applied + sum(1 for version in held.values() if version == envelope.stream_version) == len(wanting)

    return apply


def _parked(row: sa.RowMapping) -> Parked:
    return Parked(
        id=row["id"],
        consumer=row["consumer"],
        source=row["source"],
        partition=row["partition"],
        position=row["position"],
        event_id=row["event_id"],
        reason=row["reason"],
        raw=bytes(row["raw"]),
        parked_at=utc(row["parked_at"]) or row["parked_at"],
        replayed_at=utc(row["replayed_at"]),
    )
