"""Helpers for the distributed-mode tests: a history of real events, topic readers, threads, table dumps."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import orjson
import sqlalchemy as sa

from projections.database import utc
from projections.framework import ProjectionStore, table_of
from provenance.application import ProvenanceApp
from provenance.kafka.relay import Relay
from provenance.runner import EmbeddedRunner, ProjectionConsumer
from tests.core.support import face, publish_new

DEADLINE_S = 60.0


def record_history(app: ProvenanceApp, videos: int = 6, tag: str = "") -> list[UUID]:
    """People, a cameo with consent, published videos and remixes, a takedown and a revocation cascade.

    Every stream type and most event types appear, so read models built from it exercise every projection.
    """
    alice = app.register_person(f"alice{tag}")
    bob = app.register_person(f"bob{tag}")
    ts = app.register_person(f"safety{tag}", roles=["member", "trust_and_safety"])
    app.follow(alice, bob)
    cameo = app.register_cameo(alice, face())
    grant = app.grant_consent(alice, cameo, "approved", grantees=[bob])
    app.grant_consent(alice, cameo, "everyone", scope=["remix"])
    made: list[UUID] = []
    for n in range(videos):
        video = publish_new(app, bob, f"clip {tag}{n}", cameo_ids=[cameo] if n % 2 == 0 else [])
        remix = publish_new(app, alice, f"remix {tag}{n}", remix_of=video)
        made += [video, remix]
    app.take_down(made[-1], ts, reason_code="spam", statement_of_reasons="spam, on notice", source="notice")
    app.revoke_consent(alice, cameo, grant, "changed my mind")
    return made


def more_videos(app: ProvenanceApp, handle: str, count: int) -> list[UUID]:
    person = app.register_person(handle)
    return [publish_new(app, person, f"{handle} {n}") for n in range(count)]


def relay_all(relay: Relay) -> int:
    """Relay until the outbox is empty; returns events published."""
    total = 0
    while count := relay.relay_batch():
        total += count
    return total


def embedded_reference(app: ProvenanceApp, store: ProjectionStore) -> None:
    """The read models as the embedded runner builds them, straight from the notification log."""
    EmbeddedRunner(app, [ProjectionConsumer(store)]).run_once()


def dump(store: ProjectionStore) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every projection table in key order, times in UTC: equal dumps are equal read models."""

    def norm(value: Any) -> Any:
        return utc(value).isoformat() if isinstance(value, datetime) else value

    out: dict[str, list[tuple[Any, ...]]] = {}
    with store.engine.connect() as conn:
        for projection in store.projections.values():
            for model in projection.tables:
                table = table_of(model)
                rows = conn.execute(sa.select(table).order_by(*table.primary_key.columns)).all()
                out[table.name] = [tuple(norm(v) for v in row) for row in rows]
    return out


@dataclass(frozen=True)
class Record:
    partition: int
    offset: int
    key: str
    value: dict[str, Any]
    headers: dict[str, str]


def read_topic(bootstrap: str, topic: str, count: int, deadline_s: float = DEADLINE_S) -> list[Record]:
    """At least `count` records from the start of every partition, with kafka-python, outside any group."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False)
    records: list[Record] = []

    def take(timeout_ms: int) -> None:
        for batch in consumer.poll(timeout_ms=timeout_ms).values():
            for r in batch:
                headers = {k: v.decode() for k, v in r.headers}
                records.append(Record(r.partition, r.offset, r.key.decode(), orjson.loads(r.value), headers))

    deadline = time.monotonic() + deadline_s
    try:
        while len(records) < count and time.monotonic() < deadline:
            take(500)
        take(1000)  # anything beyond `count` (a duplicate) must show too
    finally:
        consumer.close()
    return sorted(records, key=lambda r: (r.partition, r.offset))


def read_topic_with_kcat(kcat: str, bootstrap: str, topic: str) -> list[Record]:
    """The whole topic through kcat, an independent client (librdkafka), to the end of every partition."""
    out = subprocess.run(
        [kcat, "-b", bootstrap, "-C", "-t", topic, "-o", "beginning", "-e", "-q", "-f", r"%p\t%o\t%k\t%h\t%s\n"],
        capture_output=True,
        timeout=60,
        check=True,
    ).stdout
    records = []
    for line in out.decode().splitlines():
        partition, offset, key, headers, value = line.split("\t", 4)
        pairs = dict(h.split("=", 1) for h in headers.split(",") if h)
        records.append(Record(int(partition), int(offset), key, orjson.loads(value), pairs))
    return sorted(records, key=lambda r: (r.partition, r.offset))


def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    """Per partition, the offset the next message will get."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        return {tp.partition: offset for tp, offset in consumer.end_offsets(partitions).items()}
    finally:
        consumer.close()


def delete_topic(bootstrap: str, topic: str) -> None:
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.delete_topics([topic])
    finally:
        admin.close()


def produce_raw(bootstrap: str, topic: str, messages: list[tuple[str, bytes]]) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        for key, value in messages:
            producer.send(topic, key=key.encode(), value=value)
        producer.flush(30)
    finally:
        producer.close()


def wait_for(predicate: Callable[[], bool], what: str, deadline_s: float = DEADLINE_S, every_s: float = 0.1) -> None:
    deadline = time.monotonic() + deadline_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {deadline_s:.0f} s waiting for {what}")
        time.sleep(every_s)


class Background:
    """A role function running in a thread, with its stop event; a failure in it fails the test."""

    def __init__(self, target: Callable[[threading.Event], None], name: str) -> None:
        self.stop = threading.Event()
        self.error: BaseException | None = None

        def run() -> None:
            try:
                target(self.stop)
            except BaseException as exc:
                self.error = exc

        self.thread = threading.Thread(target=run, name=name, daemon=True)

    def start(self) -> Background:
        self.thread.start()
        return self

    def check(self) -> bool:
        """Raise the thread's failure; False otherwise, so that it can open an `or` in a wait condition."""
        if self.error is not None:
            raise AssertionError(f"{self.thread.name} failed: {self.error!r}") from self.error
        return False

    def finish(self, timeout_s: float = 30.0) -> None:
        self.stop.set()
        self.thread.join(timeout_s)
        assert not self.thread.is_alive(), f"{self.thread.name} did not stop within {timeout_s:.0f} s"
        self.check()


@contextmanager
def running(target: Callable[[threading.Event], None], name: str) -> Iterator[Background]:
    background = Background(target, name).start()
    try:
        yield background
    finally:
        background.finish()


def per_stream_versions(records: list[Record]) -> dict[str, list[int]]:
    """Stream versions in the order each partition holds them."""
    versions: dict[str, list[int]] = {}
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        versions.setdefault(record.key, []).append(record.value["stream_version"])
    return versions
