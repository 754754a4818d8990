"""The relay: every recorded event, in notification order, onto the Kafka topic (the outbox pattern).

Messages are keyed by stream id, so each stream lands on one partition in version order. The relay's own
position (the last notification id the broker acknowledged) lives in the projections database and moves
only after the producer has flushed a whole batch with `acks=all`. After a crash, or a broker that stayed
away longer than the producer's delivery timeout, the relay sends again from that position: at-least-once.
A duplicate is harmless, as consumers skip stream versions they already applied. The idempotent producer
keeps what one producer wrote to a partition a gapless prefix of what it sent, so a resend never lets a
later version of a stream overtake an earlier one.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from kernel.memory import no_cyclic_collection
from provenance.application import ProvenanceApp
from provenance.kafka.admin import TopicSpec, ensure_topic
from provenance.kafka.backoff import Backoff
from provenance.kafka.client import kafka, topic_source
from provenance.kafka.errors import RelayError, TopicError, is_transient
from provenance.kafka.health import STALLED_CONNECT_S, Progress
from provenance.kafka.lease import Lease
from provenance.kafka.positions import Positions
from provenance.log import last_position, read_log
from schemas.envelope import EventEnvelope

log = logging.getLogger(__name__)

RELAY = "relay"
"""Consumer name of the relay's checkpoint (source `kafka:<topic>`, partition 0)."""


@dataclass(frozen=True)
class RelayOptions:
    batch_size: int = 10_000
    """Events read from the outbox and sent before waiting for the broker's acknowledgement of all of them: each
    wait leaves the producer idle, and at 2,000 a batch the waits cost a quarter of the relay's rate."""
    idle_wait_s: float = 0.05
    """How long to wait before looking at the outbox again when it had nothing new."""
    partitions: int = 6
    replication_factor: int = 1
    linger_ms: int = 5
    producer_batch_bytes: int = 256 * 1024
    delivery_timeout_ms: int = 120_000
    """How long the producer retries a record itself; past that the relay resends from its position."""
    request_timeout_ms: int = 30_000
    max_block_ms: int = 10_000
    flush_slice_s: float = 1.0
    flush_grace_s: float = 10.0
    """How long past the delivery timeout an unfinished send is waited for before the batch is sent again."""
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    progress_every_s: float = 10.0
    standby_wait_s: float = 1.0
    """How often a relay without the lease tries to take it over."""

    @property
    def round_s(self) -> float:
        """The longest a round of the relay takes when nothing is stuck: its sends, which block for buffer space
        only until earlier sends are delivered or expire (within the delivery timeout), then the wait for their
        own delivery and its grace, the longest wait before trying again, and a stalled database connection."""
        waits_ms = 2 * self.delivery_timeout_ms + self.max_block_ms + self.request_timeout_ms
        return waits_ms / 1000 + self.flush_grace_s + self.backoff_max_s + STALLED_CONNECT_S


def headers_of(envelope: EventEnvelope) -> list[tuple[str, bytes]]:
    """What a consumer can route on without parsing the value."""
    return [
        ("event_type", envelope.event_type.encode()),
        ("schema_version", str(envelope.schema_version).encode()),
        ("event_id", envelope.event_id.encode()),
        ("stream_type", envelope.stream_type.encode()),
    ]


class StreamPartitions:
    """The partition of each stream, as Kafka's default partitioner picks it (murmur2 of the key), cached.

    Every event of a stream lands on the partition any keyed Kafka producer would choose for it; hashing a
    stream id once rather than once per event takes a visible share off the relay's time, since the
    client's murmur2 is pure Python.
    """

    def __init__(self, partitions: int, limit: int = 100_000) -> None:
        from kafka.partitioner.default import murmur2

        self.partitions = partitions
        self.limit = limit
        self._hash = murmur2
        self._known: dict[bytes, int] = {}

    def __call__(self, key: bytes) -> int:
        partition = self._known.get(key)
        if partition is None:
            if len(self._known) >= self.limit:
                self._known.clear()
            partition = (self._hash(key) & 0x7FFFFFFF) % self.partitions
            self._known[key] = partition
        return partition


class Relay:
    def __init__(
        self,
        app: ProvenanceApp,
        positions: Positions,
        bootstrap: str,
        topic: str,
        options: RelayOptions | None = None,
        *,
        lease: Lease | None = None,
    ) -> None:
        """`lease`, when given, is taken before `run` publishes anything: relays sharing it are hot standbys."""
        self.app = app
        self.lease = lease
        self.positions = positions
        self.bootstrap = bootstrap
        self.topic = topic
        self.source = topic_source(topic)
        self.options = options or RelayOptions()
        self.relayed = 0
        self._producer: Any = None
        self._position: int | None = None
        self._partition_of: StreamPartitions | None = None

    def position(self) -> int:
        """The last notification id the broker acknowledged (0 before the first)."""
        if self._position is None:
            self._position = self.positions.get(RELAY, self.source, 0) or 0
        return self._position

    def connect(self) -> None:
        """Create the topic if needed and connect the producer now rather than on the first batch."""
        self.ensure_topic()
        self._producer_or_new()

    def ensure_topic(self) -> StreamPartitions:
        if self._partition_of is None:
            spec = TopicSpec(self.topic, self.options.partitions, self.options.replication_factor)
            self._partition_of = StreamPartitions(ensure_topic(self.bootstrap, spec).partitions)
        return self._partition_of

    def relay_batch(self, stop: threading.Event | None = None) -> int:
        """Publish the next batch from the outbox and store the new position; returns events published.

        Raises `RelayError` when the broker did not acknowledge all of it; nothing is stored then.
        """
        partition_of = self.ensure_topic()
        position = self.position()
        with no_cyclic_collection():
            batch = read_log(self.app, position, self.options.batch_size)
            if not batch:
                return 0
            self._publish(batch, partition_of, stop)
        last = batch[-1].position
        assert last is not None
        self.positions.set(RELAY, self.source, 0, last)
        self._position = last
        self.relayed += len(batch)
        return len(batch)

    def _publish(
        self, batch: Sequence[EventEnvelope], partition_of: StreamPartitions, stop: threading.Event | None
    ) -> None:
        errors = kafka().errors
        try:
            producer = self._producer_or_new()
            futures = []
            for e in batch:
                key = e.stream_id.encode()
                futures.append(
                    producer.send(
                        self.topic, key=key, value=e.to_json(), headers=headers_of(e), partition=partition_of(key)
                    )
                )
            # Flush in slices so that a stop request is noticed while the broker is away. Every send ends
            # within the delivery timeout; one that has not ended well after it is given up on (the client
            # was seen to leave a send pending for good after a broker restart) and the batch goes again.
            give_up_at = time.monotonic() + self.options.delivery_timeout_ms / 1000 + self.options.flush_grace_s
            while not all(f.is_done for f in futures):
                if stop is not None and stop.is_set():
                    raise RelayError("stopped before the broker acknowledged the batch")
                if time.monotonic() > give_up_at:
                    raise RelayError("the producer neither delivered nor failed a send within its delivery timeout")
                try:
                    producer.flush(timeout=self.options.flush_slice_s)
                except errors.KafkaTimeoutError:
                    continue
        except errors.KafkaError as exc:
            raise RelayError(f"publishing to {self.topic} failed: {exc}") from exc
        failed = next((f for f in futures if f.failed()), None)
        if failed is not None:
            raise RelayError(f"the broker did not acknowledge an event: {failed.exception}")

    def _producer_or_new(self) -> Any:
        if self._producer is None:
            o = self.options
            self._producer = kafka().KafkaProducer(
                bootstrap_servers=self.bootstrap,
                client_id="provenance-relay",
                acks="all",
                enable_idempotence=True,
                linger_ms=o.linger_ms,
                batch_size=o.producer_batch_bytes,
                delivery_timeout_ms=o.delivery_timeout_ms,
                request_timeout_ms=o.request_timeout_ms,
                max_block_ms=o.max_block_ms,
                allow_auto_create_topics=False,
            )
        return self._producer

    def discard_producer(self) -> None:
        """Drop the producer after a failure; the next batch starts a fresh one from the stored position."""
        producer, self._producer = self._producer, None
        self._position = None
        if producer is not None:
            _close_within(producer, grace_s=0.0, wait_s=0.0)

    def close(self) -> None:
        """Give in-flight sends a few seconds to be acknowledged, then let go (unacknowledged ones resend)."""
        producer, self._producer = self._producer, None
        if producer is not None:
            _close_within(producer, grace_s=5.0, wait_s=10.0)

    def lag(self) -> int:
        return max(0, last_position(self.app) - self.position())

    def run(self, stop: threading.Event, progress: Progress | None = None) -> None:
        """Relay until `stop` is set, riding out broker and database outages with backoff; each round (a batch
        sent and acknowledged, or a wait) that takes longer than `RelayOptions.round_s` is a stuck one."""
        backoff = Backoff(self.options.backoff_initial_s, self.options.backoff_max_s)
        reported_at, reported = time.monotonic(), self.relayed
        try:
            while not stop.is_set():
                if progress is not None:
                    progress.next_round_within(self.options.round_s)
                try:
                    if not self._holding_lease():
                        stop.wait(self.options.standby_wait_s)
                        continue
                    count = self.relay_batch(stop)
                    backoff.reset()
                except (RelayError, TopicError) as exc:
                    position = self._position
                    self.discard_producer()
                    if stop.is_set():
                        break
                    delay = backoff.wait(stop)
                    log.warning("relay: %s; sending again after position %s in %.1f s", exc, position, delay)
                    continue
                except Exception as exc:
                    if not is_transient(exc):
                        raise
                    self._position = None
                    delay = backoff.wait(stop)
                    log.warning("relay: a store is unavailable (%s); retrying in %.1f s", exc, delay)
                    continue
                if count == 0:
                    stop.wait(self.options.idle_wait_s)
                now = time.monotonic()
                if now - reported_at >= self.options.progress_every_s:
                    rate = (self.relayed - reported) / (now - reported_at)
                    log.info(
                        "relay: %d events published (%.0f/s), position %d, %d behind",
                        self.relayed,
                        rate,
                        self.position(),
                        self.lag(),
                    )
                    reported_at, reported = now, self.relayed
        finally:
            self.close()
            if self.lease is not None:
                self.lease.release()

    def _holding_lease(self) -> bool:
        """Whether this relay may publish now: it holds the lease (taking it if free), or there is none."""
        lease = self.lease
        if lease is None:
            return True
        if lease.held:
            if lease.still_held():
                return True
            log.warning("relay: lost the lease for %s; standing by", self.topic)
            self.discard_producer()
        if lease.try_acquire():
            self._position = None  # the previous holder moved it
            log.info("relay: took the lease for %s at position %d", self.topic, self.position())
            return True
        return False


def _close_within(producer: Any, grace_s: float, wait_s: float) -> None:
    """Close a producer from a helper thread, waiting at most `wait_s` for it.

    A producer with batches still pending can block in `close` on the client's internal locks (seen after
    a broker restart); the relay must go on regardless, since nothing it relies on depends on the
    abandoned producer: whatever it still delivers is a duplicate that consumers skip.
    """

    def close() -> None:
        try:
            producer.close(timeout=grace_s)
        except Exception as exc:  # a failed producer's own complaints about its pending batches
            log.debug("closing a producer: %r", exc)

    closer = threading.Thread(target=close, name="relay-producer-close", daemon=True)
    closer.start()
    closer.join(wait_s)
    if wait_s and closer.is_alive():
        log.warning("relay: the producer did not close within %.0f s; leaving it behind", wait_s)
