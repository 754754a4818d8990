"""The relay lease: one holder at a time, and a holder that dies lets a standby take over."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from provenance.kafka.lease import Lease
from provenance.kafka.positions import open_engine

HOLD_AND_WAIT = """
import sys, time
from provenance.kafka.lease import Lease
from provenance.kafka.positions import open_engine
lease = Lease(open_engine(sys.argv[1]), "relay:events")
print("held" if lease.try_acquire() else "refused", flush=True)
time.sleep(120)
"""


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'projections.db'}"
    return str(request.getfixturevalue("fresh_postgres_db"))


def test_one_holder_at_a_time_and_a_release_hands_it_on(database: str) -> None:
    first, second = Lease(open_engine(database), "relay:events"), Lease(open_engine(database), "relay:events")
    other_topic = Lease(open_engine(database), "relay:other")
    assert first.try_acquire() and first.still_held()
    assert not second.try_acquire() and not second.held
    assert other_topic.try_acquire()  # leases of other topics are independent
    first.release()
    assert not first.still_held()
    assert second.try_acquire()
    assert not first.try_acquire()
    second.release()
    other_topic.release()


def test_a_holder_that_dies_lets_the_standby_take_over(database: str) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_AND_WAIT, database], stdout=subprocess.PIPE, text=True, env=dict(os.environ)
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        standby = Lease(open_engine(database), "relay:events")
        assert not standby.try_acquire()
        os.kill(holder.pid, signal.SIGKILL)  # no cleanup runs: the database or the kernel must let go
        holder.wait(timeout=10)
        deadline = time.monotonic() + 15
        while not standby.try_acquire():
            assert time.monotonic() < deadline, "the lease of a dead holder was never released"
            time.sleep(0.1)
        standby.release()
    finally:
        if holder.poll() is None:
            holder.kill()


def test_a_holder_whose_session_ends_knows_it_lost_the_lease(fresh_postgres_db: str) -> None:
    engine = open_engine(fresh_postgres_db)
    holder, standby = Lease(engine, "relay:events"), Lease(open_engine(fresh_postgres_db), "relay:events")
    assert holder.try_acquire()
    with engine.connect() as admin:  # the session is cut off, as by a network partition or a server restart
        admin.execute(
            sa.text(
                "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND pid <> pg_backend_pid()"
            )
        )
    assert not holder.still_held() and not holder.held
    assert standby.try_acquire()
    standby.release()


def test_other_databases_are_refused() -> None:
    from provenance.kafka.errors import RelayError

    with pytest.raises(RelayError, match="no lease for a mysql database"):
        Lease(sa.create_mock_engine("mysql://", lambda *_: None), "relay:events")  # type: ignore[arg-type]
