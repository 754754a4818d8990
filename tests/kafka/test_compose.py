"""docker-compose.yml describes the whole distributed stack, wired the way the code reads its settings."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from provenance.config import Settings
from provenance.kafka import ROLES, WORKER_ROLES
from provenance.kafka.health import Heartbeat, heartbeat_path, keep_beating
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
    """The services that run a role (`provenance serve`), CPU and GPU variants alike."""
    return {name: s for name, s in services.items() if s.get("command", [None])[:2] == ["provenance", "serve"]}


def default_services(services: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """What `docker compose up` starts: every service outside a profile."""
    return {name: s for name, s in services.items() if not s.get("profiles")}


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
    assert sorted(role_of(s) for s in provenance_services(default_services(services)).values()) == sorted(ROLES)
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
            expected = "service_completed_successfully" if dependency == "pki" else "service_healthy"
            assert condition == {"condition": expected}, f"{name} -> {dependency}"
        role = role_of(service)
        assert service["healthcheck"]["test"] == ["CMD", "python", "-m", "provenance.kafka.health", role]
        if role in WORKER_ROLES or role in ("projections", "consent"):
            assert "relay" in depends, name


def test_the_stack_runs_on_cpus_by_default_and_the_gpu_is_a_profile(services: dict[str, dict[str, Any]]) -> None:
    for name, service in provenance_services(default_services(services)).items():
        assert service["build"]["target"] == "cpu" and "resources" not in service.get("deploy", {}), name
    gpu = {name: s for name, s in provenance_services(services).items() if s.get("profiles") == ["gpu"]}
    # The GPU image goes to both roles that use a GPU: the renderer (torch) and moderation (ONNX).
    assert sorted(role_of(s) for s in gpu.values()) == ["generator", "moderation"]
    for name, service in gpu.items():
        assert service["build"]["target"] == "gpu", name
        devices = service["deploy"]["resources"]["reservations"]["devices"]
        assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices), name


def test_the_broker_is_the_tested_version() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    tested = re.search(r"<kafka.version>(.+)</kafka.version>", (ROOT / "scripts/kafka/pom.xml").read_text())
    assert tested is not None
    assert compose["services"]["kafka"]["image"] == f"apache/kafka:{tested.group(1)}"


def test_passwords_are_given_apart_from_the_urls(services: dict[str, dict[str, Any]]) -> None:
    """A password with `@` or `/` in it would break a URL it was pasted into: it is percent-encoded for us."""
    for name, service in provenance_services(services).items():
        env = environment(service)
        for key in ("PROVENANCE_POSTGRES_DSN", "PROVENANCE_PROJECTIONS_URL", "PROVENANCE_KEYS_URL"):
            assert ":" not in env[key].split("://", 1)[1].split("@", 1)[0], f"{name}: {key} holds a password"
        settings = Settings.from_env({**env, "PROVENANCE_POSTGRES_PASSWORD": "p@ss/w:rd%"})
        assert settings.postgres_dsn is not None and "p%40ss%2Fw%3Ard%25@postgres" in settings.postgres_dsn


def test_the_signing_identity_is_provisioned_before_signing_starts(services: dict[str, dict[str, Any]]) -> None:
    signing = next(s for s in provenance_services(default_services(services)).values() if role_of(s) == "signing")
    assert signing["depends_on"]["pki"] == {"condition": "service_completed_successfully"}
    pki = services["pki"]
    assert "provenance pki init" in " ".join(pki["command"]) and pki["restart"] == "no"
    assert any(volume.endswith(":/signing:ro") for volume in signing["volumes"])  # where a real one is mounted


def test_production_moderation_has_a_volume_for_model_weights(services: dict[str, dict[str, Any]]) -> None:
    for name, service in provenance_services(services).items():
        if role_of(service) == "moderation":
            assert any(volume.endswith(":/models:ro") for volume in service["volumes"]), name
            assert "PROVENANCE_CLIP_WEIGHTS" in environment(service), name


def test_the_health_check_passes_only_while_a_live_process_beats(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROVENANCE_HOME", str(tmp_path))
    assert health_main(["relay"]) == 1  # not started yet
    stop = threading.Event()
    beating = keep_beating(heartbeat_path(tmp_path, "relay"), lambda: True, stop)
    wait_until(lambda: health_main(["relay"]) == 0)
    assert health_main(["relay", "--max-age", "-1"]) == 1  # stale
    assert health_main(["signing"]) == 1  # one role's beat does not vouch for another
    stop.set()
    beating.join()
    assert health_main(["relay"]) == 1  # the process stopped beating: its file went with it
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    Heartbeat(heartbeat_path(tmp_path, "relay", int(dead.stdout)))()
    assert health_main(["relay"]) == 1  # a fresh beat of a dead process vouches for nothing


def test_the_beat_goes_on_while_the_role_works_and_stops_with_it(tmp_path: Path) -> None:
    working = threading.Event()
    working.set()
    path = heartbeat_path(tmp_path, "generator")
    beating = keep_beating(path, working.is_set, threading.Event())
    wait_until(path.exists)  # beating while the role's thread is busy (a long render), without its help
    working.clear()
    beating.join(timeout=5)
    assert not beating.is_alive() and not path.exists()


def wait_until(condition: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


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
