"""Kafka consumer groups over the event topic, positioned by the database rather than by Kafka.

Auto commit is off. When the group assigns a partition, the consumer seeks it to the position its sink
stored in the projections database (the offset after the last one processed, or the beginning), so the
offsets that count are the ones written in the same transaction as the rows they produced. Offsets are
also committed to Kafka after each batch, for lag monitoring only.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from kernel.memory import no_cyclic_collection
from provenance.kafka.backoff import Backoff
from provenance.kafka.client import kafka, topic_source
from provenance.kafka.errors import TopicError, TransientFailure, is_transient
from provenance.kafka.health import STALLED_CONNECT_S, Progress
from provenance.kafka.sinks import Message, Sink

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ConsumerOptions:
    group_id: str
    max_poll_records: int = 2000
    poll_timeout_ms: int = 500
    session_timeout_ms: int = 30_000
    heartbeat_interval_ms: int = 3_000
    max_poll_interval_ms: int = 300_000
    """A worker whose single event takes longer (a long render) needs this raised, or fewer poll records."""
    fetch_max_wait_ms: int = 100
    commit_to_kafka: bool = True
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    progress_every_s: float = 10.0
    client_id: str | None = None

    @property
    def round_s(self) -> float:
        """The longest a round of the follower takes when nothing is stuck: as long as Kafka allows between
        polls, the longest wait before trying again, and a stalled database connection."""
        return self.max_poll_interval_ms / 1000 + self.backoff_max_s + STALLED_CONNECT_S


class TopicFollower:
    """One member of a consumer group feeding one sink with what each poll returns, every partition's records
    in offset order."""

    def __init__(self, bootstrap: str, topic: str, sink: Sink, options: ConsumerOptions) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.source = topic_source(topic)
        self.sink = sink
        self.options = options
        self.handled = 0
        self.parked = 0
        self._consumer: Any = None
        self._next: dict[Any, int] = {}
        """Per assigned partition, the next offset to process; records below it are stale and dropped."""
        self._unpositioned: set[Any] = set()
        """Assigned partitions whose stored position could not be read yet: paused until it can."""
        self._lock = threading.Lock()

    # --- lifecycle ---------------------------------------------------------------------------------------

    def start(self) -> None:
        if self._consumer is not None:
            return
        k = kafka()
        o = self.options
        consumer = k.KafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=o.group_id,
            client_id=o.client_id or f"provenance-{self.sink.name}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=o.max_poll_records,
            session_timeout_ms=o.session_timeout_ms,
            heartbeat_interval_ms=o.heartbeat_interval_ms,
            max_poll_interval_ms=o.max_poll_interval_ms,
            fetch_max_wait_ms=o.fetch_max_wait_ms,
            allow_auto_create_topics=False,
        )
        # Know the topic's partitions before joining: a group leader whose metadata lacks them assigns none,
        # and nothing makes it look again for minutes.
        if not consumer.partitions_for_topic(self.topic):
            consumer.close(autocommit=False)
            raise TopicError(f"topic {self.topic} does not exist (yet)")
        consumer.subscribe([self.topic], listener=_listener(self))
        self._consumer = consumer

    def close(self) -> None:
        """Leave the group (its partitions go to the other members at once) and drop the connection."""
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            try:
                consumer.close(autocommit=False)
            except Exception as exc:  # closing is best effort: the group also notices a dead member by itself
                log.debug("closing the %s consumer: %r", self.sink.name, exc)

    def assignment(self) -> set[int]:
        return {tp.partition for tp in (self._consumer.assignment() if self._consumer is not None else set())}

    # --- positioning (called from the rebalance listener) --------------------------------------------------

    def on_assigned(self, partitions: Sequence[Any]) -> None:
        for tp in partitions:
            self._position(tp)
        if partitions:
            numbers = sorted(tp.partition for tp in partitions)
            log.info("%s: assigned partitions %s of %s", self.sink.name, numbers, self.topic)

    def on_revoked(self, partitions: Sequence[Any]) -> None:
        with self._lock:
            for tp in partitions:
                self._next.pop(tp, None)
                self._unpositioned.discard(tp)

    def _position(self, tp: Any) -> bool:
        """Seek a partition to its stored position; on a database failure pause it until a later retry."""
        consumer = self._consumer
        try:
            stored = self.sink.resume_position(self.source, tp.partition)
        except Exception as exc:
            if not is_transient(exc):
                raise
            log.warning("%s: cannot read the position of partition %d yet: %s", self.sink.name, tp.partition, exc)
            with self._lock:
                self._unpositioned.add(tp)
                self._next.pop(tp, None)
            consumer.pause(tp)
            return False
        if stored is None:
            consumer.seek_to_beginning(tp)
            next_offset = 0
        else:
            next_offset = stored + 1
            consumer.seek(tp, next_offset)
        with self._lock:
            self._next[tp] = next_offset
            self._unpositioned.discard(tp)
        if tp in consumer.paused():
            consumer.resume(tp)
        return True

    def _retry_unpositioned(self) -> None:
        with self._lock:
            waiting = list(self._unpositioned)
        assigned = self._consumer.assignment()
        for tp in waiting:
            if tp in assigned:
                self._position(tp)
            else:
                with self._lock:
                    self._unpositioned.discard(tp)

    def reposition(self) -> None:
        """Back to the stored positions of every assigned partition (after a failed batch)."""
        for tp in self._consumer.assignment():
            self._position(tp)

    # --- consuming -----------------------------------------------------------------------------------------

    def poll_once(self) -> int:
        """Process what one poll returns; returns the number of messages processed."""
        self.start()
        if self._unpositioned:
            self._retry_unpositioned()
        k = kafka()
        batches = self._consumer.poll(timeout_ms=self.options.poll_timeout_ms)
        polled: dict[Any, list[Message]] = {}
        for tp, records in batches.items():
            with self._lock:
                floor = self._next.get(tp)
            if floor is None:
                continue  # revoked or not positioned yet: its records will be read again from the stored position
            messages = [Message(r.offset, r.value) for r in records if r.offset >= floor]
            if messages:
                polled[tp] = messages
        if not polled:
            return 0
        with no_cyclic_collection():  # only around our own work: the client's group protocol runs as it is
            result = self.sink.apply({tp.partition: messages for tp, messages in polled.items()}, self.source)
        self.handled += result.handled
        self.parked += result.parked
        commits: dict[Any, Any] = {}
        for tp, messages in polled.items():
            next_offset = messages[-1].position + 1
            with self._lock:
                if tp in self._next:
                    self._next[tp] = next_offset
            commits[tp] = k.structs.OffsetAndMetadata(next_offset, "", -1)
        if self.options.commit_to_kafka:
            self._commit(commits)
        return sum(len(messages) for messages in polled.values())

    def _commit(self, offsets: dict[Any, Any]) -> None:
        def report(_: Any, response: Any) -> None:
            if isinstance(response, Exception):
                log.debug("%s: offsets not committed to Kafka (monitoring only): %r", self.sink.name, response)

        try:
            self._consumer.commit_async(offsets, callback=report)
        except Exception as exc:  # Kafka's copy of the offsets is for monitoring; the database has the truth
            log.debug("%s: offsets not committed to Kafka: %r", self.sink.name, exc)

    def run(self, stop: threading.Event, progress: Progress | None = None) -> None:
        """Consume until `stop` is set, waiting out database outages; leaves the group on the way out.

        Each round (a poll and its batch, or a wait before trying again) may take `ConsumerOptions.round_s`:
        longer, and `progress` says the loop is stuck.
        """
        backoff = Backoff(self.options.backoff_initial_s, self.options.backoff_max_s)
        errors = kafka().errors
        reported_at = time.monotonic()
        reported = 0
        try:
            while not stop.is_set():
                if progress is not None:
                    progress.next_round_within(self.options.round_s)
                try:
                    self.poll_once()
                    backoff.reset()
                except TransientFailure as exc:
                    delay = backoff.wait(stop)
                    log.warning("%s: %s; retrying in %.1f s", self.sink.name, exc, delay)
                    self._reposition_quietly()
                except (errors.KafkaError, TopicError) as exc:
                    if self._consumer is not None and not isinstance(exc, errors.KafkaTimeoutError):
                        raise
                    delay = backoff.wait(stop)
                    log.warning("%s: cannot reach Kafka (%s); retrying in %.1f s", self.sink.name, exc, delay)
                now = time.monotonic()
                if now - reported_at >= self.options.progress_every_s:
                    rate = (self.handled - reported) / (now - reported_at)
                    log.info(
                        "%s: %d events handled (%.0f/s), %d parked, partitions %s",
                        self.sink.name,
                        self.handled,
                        rate,
                        self.parked,
                        sorted(self.assignment()),
                    )
                    reported_at, reported = now, self.handled
        finally:
            self.close()

    def _reposition_quietly(self) -> None:
        try:
            self.reposition()
        except Exception as exc:
            if not is_transient(exc):
                raise
            log.debug("%s: repositioning deferred: %r", self.sink.name, exc)


def _listener(follower: TopicFollower) -> Any:
    from kafka import ConsumerRebalanceListener

    class SeekToStoredPositions(ConsumerRebalanceListener):
        """Runs on the client's IO thread: reads a few checkpoint rows and seeks, nothing slow."""

        def on_partitions_revoked(self, revoked: Any) -> None:
            follower.on_revoked(list(revoked))

        def on_partitions_assigned(self, assigned: Any) -> None:
            follower.on_assigned(list(assigned))

    return SeekToStoredPositions()
