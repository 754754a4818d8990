from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from provenance.application import ProvenanceApp
from provenance.bootstrap import System
from provenance.config import Settings


@pytest.fixture
def settings(tmp_path: Path, kafka_bootstrap: str, fresh_kafka_topic: str) -> Settings:
    """Embedded stores on disk, the test's broker and a fresh topic of its own."""
    return Settings(
        home=tmp_path / "home", event_store="sqlite", kafka_bootstrap=kafka_bootstrap, kafka_topic=fresh_kafka_topic
    )


@pytest.fixture
def system(settings: Settings) -> Iterator[System]:
    built = System(settings)
    yield built
    built.close()


@pytest.fixture
def app(system: System) -> ProvenanceApp:
    return system.app
