from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from provenance.api.accounts import Accounts
from provenance.api.app import create_app
from provenance.application.service import OPERATOR
from provenance.bootstrap import System
from provenance.config import Settings

PASSWORD = "correct horse battery staple"


class Clock:
    def __init__(self) -> None:
        self.now = 2_000_000_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Api:
    client: TestClient
    system: System
    accounts: Accounts
    clock: Clock
    tokens: dict[str, str] = field(default_factory=dict)
    """Bearer tokens by who holds them: member, trust_and_safety, auditor, administrator, platform."""

    def headers(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}


def make_people(system: System, accounts: Accounts) -> dict[str, str]:
    """One principal per role, with an unrestricted token each."""
    from provenance.api.security import person_scopes

    app = system.app
    roles = {
        "member": [],
        "trust_and_safety": ["trust_and_safety"],
        "auditor": ["auditor"],
        "administrator": ["administrator"],
    }
    tokens = {}
    for handle, extra in roles.items():
        person = app.register_person(handle.replace("_", "-"))
        for role in extra:
            app.change_role(OPERATOR, person, role, grant=True)
        if handle == "auditor":  # reads everything, changes nothing: not a member
            app.change_role(OPERATOR, person, "member", grant=False, reason="an auditor's account")
        accounts.set_password(str(person), PASSWORD)
        scopes = person_scopes(frozenset(app.person(person).roles))
        tokens[handle], _ = accounts.issue("person", str(person), scopes, 3600)
    client_id, _ = accounts.create_client("a platform", ["verify", "fetch:manifests"])
    tokens["platform"], _ = accounts.issue("client", client_id, ["verify", "fetch:manifests"], 3600)
    return tokens


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    settings = Settings(home=tmp_path / "home", event_store="sqlite", api_rate=1000)
    system = System(settings)
    clock = Clock()
    settings.home.mkdir(parents=True)
    accounts = Accounts(settings.keys_database, clock=clock)
    with TestClient(create_app(system, accounts)) as client:
        yield Api(client, system, accounts, clock, make_people(system, accounts))
    system.close()
