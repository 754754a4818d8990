"""Fixtures shared by the whole suite. Real servers (PostgreSQL, Kafka, kcat) come from services.py."""

from tests.services import (
    fresh_kafka_topic,
    fresh_postgres_db,
    kafka_bootstrap,
    kafka_broker,
    kafka_session_broker,
    kcat_path,
    postgres_dsn,
)

__all__ = [
    "fresh_kafka_topic",
    "fresh_postgres_db",
    "kafka_bootstrap",
    "kafka_broker",
    "kafka_session_broker",
    "kcat_path",
    "postgres_dsn",
]
