"""Where kafka-python is imported, and the connection settings every client of ours shares."""

from __future__ import annotations

from types import ModuleType

from kernel.errors import require
from provenance.config import Settings
from provenance.kafka.errors import KafkaNotConfigured


def kafka() -> ModuleType:
    """The kafka-python package, or an error naming the extra that provides it."""
    require("kafka", "kafka")
    import kafka as kafka_python

    return kafka_python


def bootstrap_of(settings: Settings) -> str:
    if not settings.kafka_bootstrap:
        raise KafkaNotConfigured("no Kafka broker configured: set PROVENANCE_KAFKA_BOOTSTRAP to host:port")
    return settings.kafka_bootstrap


def topic_source(topic: str) -> str:
    """The checkpoint source under which positions in a topic are stored (one row per partition)."""
    return f"kafka:{topic}"
