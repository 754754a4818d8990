"""Requests generated from the service's own OpenAPI document: none gets a server error."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings

from provenance.api.accounts import Accounts
from provenance.api.app import create_app
from provenance.bootstrap import System
from provenance.config import Settings
from tests.api.conftest import make_people


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, dict[str, str]]]:
    # Renders are refused by cost: the fuzz is about the service's answers, not about rendering many clips.
    config = Settings(home=tmp_path_factory.mktemp("fuzz") / "home", api_rate=100_000, max_render_cost=1)
    system = System(config)
    config.home.mkdir(parents=True)
    accounts = Accounts(config.keys_database)
    tokens = make_people(system, accounts)
    app = create_app(system, accounts)
    with TestClient(app):  # runs the app's start-up and shut-down
        yield app, tokens
    system.close()


def test_no_generated_request_gets_a_server_error(served: tuple[Any, dict[str, str]]) -> None:
    app, tokens = served
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 30

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
        def no_server_error(case: Any) -> None:
            for who in ("administrator", "trust_and_safety", "platform"):
                response = case.call(headers={"Authorization": f"Bearer {tokens[who]}"})
                assert response.status_code < 500, (who, case.method, case.formatted_path, response.text)
                if response.status_code >= 400:
                    [media_type] = response.headers["content-type"]
                    assert media_type == "application/problem+json", response.text

        no_server_error()
