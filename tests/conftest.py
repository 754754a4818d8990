"""Fixtures shared by the whole suite. Real servers (PostgreSQL, Kafka, kcat) come from services.py.

Tests that need a server are marked for it here, from the fixtures they use, so `-m "not postgres"` or
`-m kafka` select them without anyone remembering to decorate each test.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import settings as hypothesis_settings

from tests.services import (
    fresh_kafka_topic,
    fresh_postgres_db,
    kafka_bootstrap,
    kafka_broker,
    kafka_session_broker,
    kcat_path,
    postgres_dsn,
)

# CI runs the same examples every time (a failure there is a bug to reproduce, not luck); people get new ones.
hypothesis_settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    hypothesis_settings.load_profile("ci")

__all__ = [
    "fresh_kafka_topic",
    "fresh_postgres_db",
    "kafka_bootstrap",
    "kafka_broker",
    "kafka_session_broker",
    "kcat_path",
    "postgres_dsn",
]

SERVER_FIXTURES = {
    "postgres": frozenset({"postgres_dsn", "fresh_postgres_db"}),
    "kafka": frozenset({"kafka_session_broker", "kafka_broker", "kafka_bootstrap", "fresh_kafka_topic"}),
}
"""The fixtures that start or connect to each server (their users, direct or not, need that server)."""

SERVER_PARAMS = {"postgres": frozenset({"postgres", "postgresql"}), "kafka": frozenset({"kafka"})}
"""Parameter values that name a backend: a fixture parametrised over backends asks for the server's
fixture only while it runs (`request.getfixturevalue`), so collection sees just the parameter."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        callspec = getattr(item, "callspec", None)
        params = {v for v in callspec.params.values() if isinstance(v, str)} if callspec is not None else set()
        for marker, names in SERVER_FIXTURES.items():
            if fixtures & names or params & SERVER_PARAMS[marker]:
                item.add_marker(marker)
