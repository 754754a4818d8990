"""Where messages from the log go: the projections, or a worker's handler, with poison events parked.

A sink takes what one poll returned, each partition's messages in offset order, and owns what "processed"
means for them: the projections write rows and offsets in one transaction; a worker runs its idempotent
command per event and then stores its position (at-least-once). Either way, an event that cannot be handled
is parked and its offset still counts, so one bad message never blocks the events behind it. A failure of
the infrastructure (a database down) is not the event's fault: it raises `TransientFailure`, nothing is
parked, and the batch is read again from the stored position once the store is back.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from projections.framework import ProjectionStore, read_checkpoint, write_checkpoint
from provenance.kafka.dead_letters import DeadLetters, decode, one_line
from provenance.kafka.errors import StorageFailure, TransientFailure, is_transient, storage_failure
from provenance.kafka.positions import Positions
from schemas.catalogue import InvalidEvent
from schemas.envelope import EventEnvelope

log = logging.getLogger(__name__)

PROJECTIONS = "projections"


@dataclass(frozen=True, slots=True)
class Message:
    position: int
    raw: bytes | None


@dataclass(frozen=True)
class BatchResult:
    handled: int
    parked: int


class Sink(Protocol):
    name: str

    def resume_position(self, source: str, partition: int) -> int | None:
        """The last position fully processed, or None to start from the beginning of the partition."""
        ...

    def apply(self, batches: Mapping[int, Sequence[Message]], source: str) -> BatchResult:
        """Process each partition's messages (in offset order); what it returns counts all of them."""
        ...


def _event_id_of(raw: bytes | None) -> str | None:
    """The event id of a message that failed to decode, when there is one to be found."""
    import orjson

    try:
        data = orjson.loads(raw or b"")
    except orjson.JSONDecodeError:
        return None
    value = data.get("event_id") if isinstance(data, dict) else None
    return str(value) if value is not None else None


def _transient(what: str, exc: Exception, where: Path | None = None) -> TransientFailure:
    if (storage := storage_failure(exc, where)) is not None:  # a full disk is waited out too, but said as what it is
        return StorageFailure(f"{storage} ({one_line(str(exc) or repr(exc))})")
    return TransientFailure(f"{what}: {one_line(str(exc) or repr(exc))}")


class ProjectionSink:
    """All projections of a store, fed from one topic partition at a time."""

    name = PROJECTIONS

    @property
    def _file(self) -> Path | None:
        """The projections' SQLite file, named when its disk fails; None on a server."""
        url = self.store.engine.url
        return Path(url.database) if url.get_backend_name() == "sqlite" and url.database else None

    def __init__(
        self, store: ProjectionStore, dead_letters: DeadLetters | None = None, *, ordered: bool = False
    ) -> None:
        self.store = store
        self.dead_letters = dead_letters or DeadLetters(store.engine)
        self.ordered = ordered
        """The source delivers each event once and in order (the embedded log): see `ProjectionStore.process`."""

    def resume_position(self, source: str, partition: int) -> int | None:
        positions = [self.store.checkpoint(name, source, partition) for name in self.store.projections]
        if not positions or any(p is None for p in positions):
            return None
        return min(p for p in positions if p is not None)

    def apply(self, batches: Mapping[int, Sequence[Message]], source: str) -> BatchResult:
        """All partitions' messages in one pair of transactions (see `ProjectionStore.process_partitions`); if
        that fails, partition by partition, and event by event within a partition that fails again."""
        good: dict[int, list[EventEnvelope]] = {}
        raws: dict[int, dict[int, bytes | None]] = {}
        handled = parked = 0
        try:
            # Poison is parked first: the projections' checkpoints may move past it below.
            for partition, messages in batches.items():
                decoded, raw = good.setdefault(partition, []), raws.setdefault(partition, {})
                for message in messages:
                    try:
                        decoded.append(decode(message.raw, message.position))
                        raw[message.position] = message.raw
                    except InvalidEvent as exc:
                        parked += self._park(source, partition, message.position, message.raw, str(exc))
            outcome = self._process_partitions(good, raws, source)
            for partition, messages in batches.items():
                applied, last_applied = outcome.get(partition, (0, None))
                handled += applied
                parked += len(good[partition]) - applied
                if messages and last_applied != messages[-1].position:
                    self.advance(source, partition, messages[-1].position)
        except TransientFailure:
            raise
        except Exception as exc:
            if is_transient(exc):
                raise _transient("the projections database is unavailable", exc, self._file) from exc
            raise
        return BatchResult(handled, parked)

    def apply_envelopes(self, envelopes: Sequence[EventEnvelope], source: str, partition: int) -> BatchResult:
        """Envelopes already decoded and checked (the embedded runner's, from the event store itself).

        A projection that fails on one of them parks that event (its JSON as the raw bytes) instead of
        stopping the log for every projection.
        """
        positioned = [e for e in envelopes if e.position is not None]
        if len(positioned) != len(envelopes):
            raise ValueError("every envelope needs its position in the log")
        if not positioned:
            return BatchResult(0, 0)
        try:
            handled, last_applied = self._process(positioned, {}, source, partition)
            last = positioned[-1].position
            assert last is not None
            if last_applied != last:
                self.advance(source, partition, last)
        except Exception as exc:
            if is_transient(exc):
                raise _transient("the projections database is unavailable", exc, self._file) from exc
            raise
        return BatchResult(handled, len(positioned) - handled)

    def _process_partitions(
        self, good: dict[int, list[EventEnvelope]], raws: dict[int, dict[int, bytes | None]], source: str
    ) -> dict[int, tuple[int, int | None]]:
        """Per partition, how many events were applied and the position of the last one applied."""
        batches = {partition: envelopes for partition, envelopes in good.items() if envelopes}
        if len(batches) > 1:
            try:
                self.store.process_partitions(batches, source, ordered=self.ordered)
                return {partition: (len(envelopes), envelopes[-1].position) for partition, envelopes in batches.items()}
            except Exception as exc:
                if is_transient(exc):
                    raise
                log.warning(
                    "a batch from %d partitions failed in the projections (%r); applying them one at a time",
                    len(batches),
                    exc,
                )
        return {
            partition: self._process(envelopes, raws[partition], source, partition)
            for partition, envelopes in batches.items()
        }

    def _process(
        self, envelopes: list[EventEnvelope], raws: dict[int, bytes | None], source: str, partition: int
    ) -> tuple[int, int | None]:
        """Apply the envelopes, one by one if the batch fails, parking those that fail alone.

        Returns how many were applied and the position of the last one applied (its checkpoint).
        """
        if not envelopes:
            return 0, None
        try:
            self.store.process(envelopes, source, partition, ordered=self.ordered)
            return len(envelopes), envelopes[-1].position
        except Exception as exc:
            if is_transient(exc):
                raise
            log.warning(
                "a batch of %d events failed in the projections (%r); applying them one by one", len(envelopes), exc
            )
        handled = 0
        last_applied: int | None = None
        for envelope in envelopes:
            try:
                self.store.process([envelope], source, partition, ordered=self.ordered)
                handled += 1
                last_applied = envelope.position
            except Exception as exc:
                if is_transient(exc):
                    raise
                assert envelope.position is not None
                reason = f"projection failed on {envelope.event_type}: {exc!r}"
                raw = raws[envelope.position] if envelope.position in raws else envelope.to_json()
                self._park(source, partition, envelope.position, raw, reason, envelope.event_id)
        return handled, last_applied

    def _park(
        self, source: str, partition: int, position: int, raw: bytes | None, reason: str, event_id: str | None = None
    ) -> int:
        event_id = event_id or _event_id_of(raw)
        return int(self.dead_letters.park(self.name, source, partition, position, raw, reason, event_id))

    def advance(self, source: str, partition: int, position: int) -> None:
        """Every projection's checkpoint up to a position whose event it had nothing to do with: the batch's
        last offset, when that offset was parked.

        Without this, a poison message at the end of a batch would be read (and found parked) again after
        every restart, and a lag monitor would never see the partition caught up.
        """
        with self.store.engine.begin() as conn:
            for name in self.store.projections:
                current = read_checkpoint(conn, name, source, partition)
                if current is None or current < position:
                    write_checkpoint(conn, name, source, partition, position)


class HandlerSink:
    """A worker: one handler call per event, at-least-once, its position stored after the batch.

    The handler sends idempotent commands (their ids derive from the event id), so an event handled again
    after a crash records nothing twice.
    """

    def __init__(
        self,
        name: str,
        positions: Positions,
        handler: Callable[[EventEnvelope], None],
        dead_letters: DeadLetters | None = None,
    ) -> None:
        self.name = name
        self.positions = positions
        self.handler = handler
        self.dead_letters = dead_letters or DeadLetters(positions.engine)

    def resume_position(self, source: str, partition: int) -> int | None:
        return self.positions.get(self.name, source, partition)

    def apply(self, batches: Mapping[int, Sequence[Message]], source: str) -> BatchResult:
        results = [self._apply(messages, source, partition) for partition, messages in batches.items()]
        return BatchResult(sum(r.handled for r in results), sum(r.parked for r in results))

    def _apply(self, messages: Sequence[Message], source: str, partition: int) -> BatchResult:
        done: int | None = None
        handled = parked = 0
        try:
            for message in messages:
                try:
                    envelope = decode(message.raw, message.position)
                except InvalidEvent as exc:
                    parked += self._park(source, partition, message, str(exc), _event_id_of(message.raw))
                    done = message.position
                    continue
                try:
                    self.handler(envelope)
                    handled += 1
                except Exception as exc:
                    if is_transient(exc):
                        raise
                    reason = f"{self.name} failed on {envelope.event_type}: {exc!r}"
                    parked += self._park(source, partition, message, reason, envelope.event_id)
                done = message.position
        except Exception as exc:
            if not is_transient(exc):
                raise
            if done is not None:
                self._store(source, partition, done)
            raise _transient(f"{self.name} could not reach a store", exc) from exc
        if done is not None:
            self._store(source, partition, done)
        return BatchResult(handled, parked)

    def _park(self, source: str, partition: int, message: Message, reason: str, event_id: str | None) -> int:
        return int(
            self.dead_letters.park(self.name, source, partition, message.position, message.raw, reason, event_id)
        )

    def _store(self, source: str, partition: int, position: int) -> None:
        try:
            self.positions.set(self.name, source, partition, position)
        except Exception as exc:
            if is_transient(exc):
                raise _transient(f"{self.name} could not store its position", exc) from exc
            raise
