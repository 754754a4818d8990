"""The service fixtures give real, working servers, configured as the rest of the suite relies on."""

from __future__ import annotations

import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from typing import Any

import pytest

from tests.services import KafkaBroker

MESSAGES = [(f"stream-{i % 3}", f"event-{i}") for i in range(10)]
POLL_DEADLINE_S = 60.0


@dataclass(frozen=True)
class Record:
    partition: int
    offset: int
    key: str
    value: str


def produce(bootstrap: str, topic: str, messages: list[tuple[str, str]], **config: Any) -> list[Record]:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, **config)
    try:
        futures = [(k, v, producer.send(topic, key=k.encode(), value=v.encode())) for k, v in messages]
        producer.flush()
        records = []
        for key, value, future in futures:
            meta = future.get(timeout=30)
            records.append(Record(meta.partition, meta.offset, key, value))
        return records
    finally:
        producer.close()


def consume(bootstrap: str, topic: str, count: int, **config: Any) -> list[Record]:
    """Read `count` records from the start of every partition, in the order the consumer sees them."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False, **config
    )
    records: list[Record] = []
    deadline = time.monotonic() + POLL_DEADLINE_S
    try:
        while len(records) < count and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                records += [Record(r.partition, r.offset, r.key.decode(), r.value.decode()) for r in batch]
    finally:
        consumer.close()
    return records


def by_position(records: list[Record]) -> list[Record]:
    return sorted(records, key=lambda r: (r.partition, r.offset))


def values_by_key(records: list[Record]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for record in records:
        grouped.setdefault(record.key, []).append(record.value)
    return grouped


def test_postgres_round_trips_sql(postgres_dsn: str) -> None:
    import psycopg

    with psycopg.connect(postgres_dsn) as conn:
        conn.execute("CREATE TEMP TABLE note (id int PRIMARY KEY, body text NOT NULL)")
        conn.cursor().executemany("INSERT INTO note VALUES (%s, %s)", [(1, "première"), (2, "second")])
        rows = conn.execute("SELECT id, body FROM note ORDER BY id").fetchall()
    assert rows == [(1, "première"), (2, "second")]


def test_fresh_postgres_db_is_empty_and_isolated(postgres_dsn: str, fresh_postgres_db: str) -> None:
    import psycopg

    with psycopg.connect(fresh_postgres_db) as conn:
        tables = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone()
        conn.execute("CREATE TABLE only_here (x int)")
        fresh_name = conn.execute("SELECT current_database()").fetchone()
    with psycopg.connect(postgres_dsn) as conn:
        shared_name = conn.execute("SELECT current_database()").fetchone()
        leaked = conn.execute("SELECT to_regclass('public.only_here')").fetchone()
    assert tables == (0,)
    assert fresh_name != shared_name
    assert leaked == (None,)


def test_kafka_keeps_per_key_order_through_a_consumer_group(kafka_bootstrap: str, fresh_kafka_topic: str) -> None:
    sent = produce(kafka_bootstrap, fresh_kafka_topic, MESSAGES)
    received = consume(kafka_bootstrap, fresh_kafka_topic, len(MESSAGES), group_id=f"g-{uuid.uuid4().hex}")

    assert by_position(received) == by_position(sent)
    assert values_by_key(received) == values_by_key(sent)
    partitions_per_key = {key: {r.partition for r in sent if r.key == key} for key, _ in MESSAGES}
    assert all(len(partitions) == 1 for partitions in partitions_per_key.values())


def test_kcat_reads_what_kafka_python_wrote(kafka_bootstrap: str, fresh_kafka_topic: str, kcat_path: str) -> None:
    sent = produce(kafka_bootstrap, fresh_kafka_topic, MESSAGES)
    consume_all = ["-C", "-o", "beginning", "-e", "-q", "-f", r"%p %o %k %s\n"]
    out = subprocess.run(
        [kcat_path, "-b", kafka_bootstrap, "-t", fresh_kafka_topic, *consume_all],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    read = [Record(int(p), int(o), k, v) for p, o, k, v in (line.split(" ") for line in out.splitlines())]
    assert by_position(read) == by_position(sent)


def test_kafka_commits_transactions_for_read_committed_consumers(kafka_bootstrap: str, fresh_kafka_topic: str) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, transactional_id=f"tx-{uuid.uuid4().hex}")
    try:
        producer.init_transactions()
        producer.begin_transaction()
        producer.send(fresh_kafka_topic, key=b"stream-0", value=b"aborted")
        producer.abort_transaction()
        producer.begin_transaction()
        producer.send(fresh_kafka_topic, key=b"stream-0", value=b"committed")
        producer.commit_transaction()
    finally:
        producer.close()
    received = consume(kafka_bootstrap, fresh_kafka_topic, 1, isolation_level="read_committed")
    assert [r.value for r in received] == ["committed"]


def port_accepts(bootstrap: str) -> bool:
    host, port = bootstrap.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=2):
            return True
    except OSError:
        return False


@pytest.mark.slow
def test_messages_survive_a_broker_restart(kafka_broker: KafkaBroker, fresh_kafka_topic: str) -> None:
    bootstrap = kafka_broker.bootstrap
    before = produce(bootstrap, fresh_kafka_topic, MESSAGES)

    kafka_broker.stop()
    assert not port_accepts(bootstrap)
    kafka_broker.start()

    assert kafka_broker.bootstrap == bootstrap
    after = consume(bootstrap, fresh_kafka_topic, len(MESSAGES))
    assert by_position(after) == by_position(before)
    # The log continues where it stopped: the same data, not a fresh broker on the same port.
    [appended] = produce(bootstrap, fresh_kafka_topic, [MESSAGES[0]])
    last_offset = max(r.offset for r in before if r.partition == appended.partition)
    assert appended.offset == last_offset + 1
