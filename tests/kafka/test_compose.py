"""docker-compose.yml describes the whole distributed stack, wired the way the code reads its settings."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from provenance.config import Settings
from provenance.kafka import ROLES, WORKER_ROLES
from provenance.kafka.health import Heartbeat, heartbeat_path
from provenance.kafka.health import main as health_main

ROOT = Path(__file__).resolve().parents[2]
INFRASTRUCTURE = {"kafka", "postgres"}
PROVENANCE_VARIABLES = {
    "PROVENANCE_EVENT_STORE",
    "PROVENANCE_POSTGRES_DSN",
    "PROVENANCE_PROJECTIONS_URL",
    "PROVENANCE_KAFKA_BOOTSTRAP",
    "PROVENANCE_KAFKA_TOPIC",
    "PROVENANCE_MODE",
    "PROVENANCE_HOME",
}


def interpolate(value: str) -> str:
    """Compose's `${NAME:-default}` with nothing set in the environment, and `$$` as a literal `$`."""
    value = re.sub(r"\$\{[A-Z0-9_]+:-([^}]*)\}", r"\1", value)
    assert not re.search(r"\$\{[^}]*\}", value), f"variable without a default: {value}"
    return value.replace("$$", "$")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return loaded


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose["services"]
    return found


def provenance_services(services: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {name: s for name, s in services.items() if s.get("command", [None])[0] == "provenance"}


def role_of(service: dict[str, Any]) -> str:
    command = service["command"]
    return str(command[command.index("--role") + 1])


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: interpolate(str(value)) for key, value in env.items()}


def test_every_role_has_a_service_running_the_one_image(services: dict[str, dict[str, Any]]) -> None:
    ours = provenance_services(services)
    assert set(services) >= INFRASTRUCTURE
    assert sorted(role_of(s) for s in ours.values()) == sorted(ROLES)
    for name, service in services.items():
        assert "image" in service or "build" in service, name
    dockerfile = (ROOT / "Dockerfile").read_text()
    stages = set(re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)", dockerfile, flags=re.MULTILINE | re.IGNORECASE))
    for name, service in ours.items():
        assert service["build"]["context"] == "."
        assert service["build"]["target"] in stages, name
        assert service["command"][:3] == ["provenance", "serve", "--role"], name


def test_services_are_wired_by_provenance_variables_that_the_settings_accept(
    compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    kafka_env = environment(services["kafka"])
    advertised = kafka_env["KAFKA_ADVERTISED_LISTENERS"].split("://", 1)[1]
    postgres_env = environment(services["postgres"])
    init_sql = " ".join(config.get("content", "") for config in compose.get("configs", {}).values())
    databases = {postgres_env["POSTGRES_DB"], *re.findall(r"CREATE DATABASE (\w+)", init_sql)}
    for name, service in provenance_services(services).items():
        env = environment(service)
        assert set(env) >= PROVENANCE_VARIABLES, f"{name} lacks {PROVENANCE_VARIABLES - set(env)}"
        settings = Settings.from_env(env)
        assert settings.event_store == "postgres"
        assert settings.kafka_bootstrap == advertised
        assert settings.home == Path("/data")
        assert any(volume.endswith(":/data") for volume in service["volumes"]), name
        for url in (settings.postgres_dsn, settings.projections_database, settings.keys_database):
            assert url is not None and url.rsplit("/", 1)[1] in databases, f"{name}: {url}"
            assert "@postgres:5432/" in url
        assert settings.postgres_dsn != settings.projections_database  # events and read models apart


def test_kafka_runs_in_kraft_mode_without_zookeeper(services: dict[str, dict[str, Any]]) -> None:
    env = environment(services["kafka"])
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"].startswith(f"{env['KAFKA_NODE_ID']}@kafka:")
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"  # the relay creates the topic, retention and all
    assert not any("ZOOKEEPER" in key for key in env)
    assert "zookeeper" not in services


def test_startup_waits_for_healthy_dependencies_and_every_service_has_a_health_check(
    services: dict[str, dict[str, Any]],
) -> None:
    for name, service in services.items():
        test = service.get("healthcheck", {}).get("test")
        assert test and test[0] in ("CMD", "CMD-SHELL"), f"{name} has no health check"
    for name, service in provenance_services(services).items():
        depends = service["depends_on"]
        assert set(depends) >= INFRASTRUCTURE, name
        for dependency, condition in depends.items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            assert condition == {"condition": "service_healthy"}, f"{name} -> {dependency}"
        role = role_of(service)
        assert service["healthcheck"]["test"] == ["CMD", "python", "-m", "provenance.kafka.health", role]
        if role in WORKER_ROLES or role == "projections":
            assert "relay" in depends, name


def test_the_generator_reserves_a_gpu(services: dict[str, dict[str, Any]]) -> None:
    [generator] = [s for s in provenance_services(services).values() if role_of(s) == "generator"]
    devices = generator["deploy"]["resources"]["reservations"]["devices"]
    assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices)
    assert generator["build"]["target"] == "gpu"
    others = [s for s in provenance_services(services).values() if role_of(s) != "generator"]
    assert all(s["build"]["target"] == "cpu" and "resources" not in s.get("deploy", {}) for s in others)


def test_the_health_check_passes_only_while_the_role_beats(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROVENANCE_HOME", str(tmp_path))
    assert health_main(["relay"]) == 1  # not started yet
    Heartbeat(heartbeat_path(tmp_path, "relay"))()
    assert health_main(["relay"]) == 0
    assert health_main(["relay", "--max-age", "-1"]) == 1  # stale
    assert health_main(["signing"]) == 1  # one role's beat does not vouch for another


def test_every_command_the_stack_runs_is_one_the_cli_accepts(services: dict[str, dict[str, Any]]) -> None:
    """Needs `provenance serve --role` with the roles of `provenance.kafka.ROLES` as its choices."""
    from provenance.cli import build_parser

    parser = build_parser()

    def accepts(argv: list[str]) -> bool:
        try:
            parser.parse_args(argv)
        except SystemExit:
            return False
        return True

    assert accepts(["serve", "--role", ROLES[0]]), "the CLI has no `provenance serve --role ROLE`"
    for name, service in provenance_services(services).items():
        assert accepts(service["command"][1:]), f"{name}: the CLI refuses {' '.join(service['command'])}"
    for role in ROLES:
        assert accepts(["serve", "--role", role]), role
    assert not accepts(["serve", "--role", "no-such-role"])
