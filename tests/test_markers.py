"""The `postgres` and `kafka` markers select exactly the tests that need those servers.

`tests/conftest.py` applies them from the fixtures a test uses and from backend parameters, so a run
without the servers (`-m "not postgres and not kafka"`) and a run of only them both work.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]
FILES = [
    "tests/core/test_projections.py",
    "tests/core/test_contract.py",
    "tests/kafka/test_lease.py",
    "tests/test_services.py",
]
POSTGRES_TESTS = {
    "tests/core/test_projections.py::test_projections_on_postgresql_equal_those_on_sqlite",
    "tests/core/test_contract.py::test_stored_topics_are_pinned_to_stream_types[postgres]",
    "tests/kafka/test_lease.py::test_one_holder_at_a_time_and_a_release_hands_it_on[postgresql]",
    "tests/kafka/test_lease.py::test_a_holder_whose_session_ends_knows_it_lost_the_lease",
    "tests/test_services.py::test_postgres_round_trips_sql",
}
KAFKA_TESTS = {
    "tests/test_services.py::test_kafka_keeps_per_key_order_through_a_consumer_group",
    "tests/test_services.py::test_messages_survive_a_broker_restart",
}
NEITHER = {
    "tests/core/test_projections.py::test_rebuild_from_scratch_equals_incremental",
    "tests/core/test_contract.py::test_stored_topics_are_pinned_to_stream_types[sqlite]",
    "tests/kafka/test_lease.py::test_one_holder_at_a_time_and_a_release_hands_it_on[sqlite]",
}


def collected(expression: str) -> set[str]:
    """Test ids that `pytest -m <expression>` would run (collection only: no server starts)."""
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", "-m", expression, *FILES],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode in (0, 5), result.stdout + result.stderr  # 5: everything deselected
    return {line.strip() for line in result.stdout.splitlines() if "::" in line}


def test_postgres_marker_selects_the_postgresql_tests() -> None:
    selected = collected("postgres")
    assert selected >= POSTGRES_TESTS
    assert not selected & (KAFKA_TESTS | NEITHER)


def test_not_postgres_deselects_them() -> None:
    selected = collected("not postgres")
    assert not selected & POSTGRES_TESTS
    assert selected >= KAFKA_TESTS | NEITHER


def test_kafka_marker_selects_the_kafka_tests() -> None:
    selected = collected("kafka")
    assert selected >= KAFKA_TESTS
    assert not selected & (POSTGRES_TESTS | NEITHER)
    assert not collected("not kafka") & KAFKA_TESTS
