"""Creating the event topic: the relay makes sure it exists, with infinite retention, before it publishes.

The topic is the durable log other teams consume and any projection is rebuilt from, so nothing may ever
age out of it: retention by time and by size are both off.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from provenance.kafka.client import kafka
from provenance.kafka.errors import TopicError

log = logging.getLogger(__name__)

INFINITE_RETENTION = {"retention.ms": "-1", "retention.bytes": "-1"}


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int = 6
    replication_factor: int = 1


@dataclass(frozen=True)
class TopicState:
    name: str
    partitions: int
    created: bool


def ensure_topic(bootstrap: str, spec: TopicSpec, timeout_s: float = 30.0) -> TopicState:
    """Create the topic if absent and wait until every partition has a leader; returns what is there.

    An existing topic is left as it is (partitions are never changed behind the operator's back: that would
    move streams to other partitions), but finite retention on it is reported, since it would lose history.
    """
    if spec.partitions < 1 or spec.replication_factor < 1:
        raise TopicError(f"topic {spec.name}: partitions and replication factor must be at least 1")
    k = kafka()
    errors = k.errors
    admin = _admin(bootstrap, timeout_s)
    try:
        created = True
        try:
            admin.create_topics(
                {
                    spec.name: {
                        "num_partitions": spec.partitions,
                        "replication_factor": spec.replication_factor,
                        "configs": INFINITE_RETENTION,
                    }
                },
                timeout_ms=int(timeout_s * 1000),
            )
        except errors.TopicAlreadyExistsError:
            created = False
        admin.wait_for_topics([spec.name], timeout_ms=int(timeout_s * 1000))
        partitions = _partition_count(admin, spec.name)
        if created:
            log.info("created topic %s with %d partitions and infinite retention", spec.name, partitions)
        else:
            _warn_on_finite_retention(admin, spec.name)
        return TopicState(spec.name, partitions, created)
    except errors.KafkaError as exc:
        raise TopicError(f"could not create or inspect topic {spec.name} at {bootstrap}: {exc}") from exc
    finally:
        admin.close()


def topic_partitions(bootstrap: str, topic: str, timeout_s: float = 30.0) -> int:
    admin = _admin(bootstrap, timeout_s)
    try:
        return _partition_count(admin, topic)
    finally:
        admin.close()


def _admin(bootstrap: str, timeout_s: float) -> Any:
    k = kafka()
    try:
        return k.KafkaAdminClient(
            bootstrap_servers=bootstrap,
            request_timeout_ms=int(timeout_s * 1000),
            bootstrap_timeout_ms=int(timeout_s * 1000),
        )
    except k.errors.KafkaError as exc:
        raise TopicError(f"cannot reach Kafka at {bootstrap}: {exc}") from exc


def _partition_count(admin: Any, topic: str) -> int:
    [described] = admin.describe_topics([topic])
    partitions = described.get("partitions") or []
    if described.get("error_code", 0) != 0 or not partitions:
        raise TopicError(f"topic {topic} does not exist or has no partitions")
    return len(partitions)


def topic_configs(bootstrap: str, topic: str, timeout_s: float = 30.0) -> dict[str, str]:
    """Every configuration value of a topic, defaults included."""
    admin = _admin(bootstrap, timeout_s)
    try:
        return _configs(admin, topic)
    finally:
        admin.close()


def _configs(admin: Any, topic: str) -> dict[str, str]:
    from kafka.admin import ConfigResource, ConfigResourceType

    described = admin.describe_configs(
        [ConfigResource(ConfigResourceType.TOPIC, topic, configs=None)], config_filter="all"
    )
    return _flatten_configs(described).get(topic, {})


def _warn_on_finite_retention(admin: Any, topic: str) -> None:
    try:
        configs = _configs(admin, topic)
    except Exception as exc:  # inspection is advisory: a broker that refuses it must not stop the relay
        log.debug("could not read the configuration of topic %s: %r", topic, exc)
        return
    for key in INFINITE_RETENTION:
        value = configs.get(key)
        if value is not None and value != "-1":
            log.warning("topic %s has %s=%s: events older than that will be deleted from the log", topic, key, value)


def _flatten_configs(described: Any) -> dict[str, dict[str, str]]:
    """{topic: {key: value}} from describe_configs' answer, whose shape differs between client versions."""
    found: dict[str, dict[str, str]] = {}
    if isinstance(described, dict):
        for resources in described.values():
            if not isinstance(resources, dict):
                continue
            for name, configs in resources.items():
                if isinstance(configs, dict):
                    found[str(name)] = {
                        str(k): str(v.get("value") if isinstance(v, dict) else v) for k, v in configs.items()
                    }
    return found
