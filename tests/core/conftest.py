from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from provenance.application import ProvenanceApp
from provenance.bootstrap import System
from provenance.config import Settings
from tests.core.support import AppFactory


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home", event_store="sqlite")


@pytest.fixture
def app(tmp_path: Path) -> Iterator[ProvenanceApp]:
    """The write side on the in-memory store: for unit tests of the rules."""
    application = System(Settings(home=tmp_path / "home", event_store="memory")).app
    yield application
    application.close()


@pytest.fixture
def people(app: ProvenanceApp) -> dict[str, object]:
    """Three members and tess, of trust and safety."""
    return {
        h: app.register_person(h, roles=["member", "trust_and_safety"] if h == "tess" else ["member"])
        for h in ("alice", "bob", "carol", "tess")
    }


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def backend_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AppFactory]:
    """Makes applications over one store, so contract tests can reopen it and see what was recorded."""
    kind = request.param
    dsn = request.getfixturevalue("fresh_postgres_db") if kind == "postgres" else None
    settings = Settings(home=tmp_path / "home", event_store=kind, postgres_dsn=dsn)
    opened: list[ProvenanceApp] = []
    shared: ProvenanceApp | None = None

    def make() -> ProvenanceApp:
        nonlocal shared
        if kind == "memory":
            # The in-memory store lives inside one application object: "reopening" returns the same one.
            shared = shared or System(settings).app
            return shared
        application = System(settings).app
        opened.append(application)
        return application

    yield make
    for application in opened:
        application.close()
    if shared is not None:
        shared.close()
