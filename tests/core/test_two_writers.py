"""Two processes writing to one event store: a command in one never decides from a copy the other has outdated.

The aggregate a command changes is taken from the process's cache as it is; these tests hold the guarantees
that make that safe: a save from an outdated copy conflicts and runs again on a fresh one, and a command that
refuses or has nothing to do checks its copy before it answers.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kernel.errors import RuleViolation
from provenance.application import ProvenanceApp
from provenance.bootstrap import System
from provenance.config import Settings
from provenance.postgres_log import DEFINITIONS_LOCK
from tests.core.support import face, moderation, publish_new, rendered, signature


@pytest.fixture(params=["sqlite", "postgres"])
def writers(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[ProvenanceApp, ProvenanceApp]]:
    """Two processes' applications on one event store."""
    dsn = request.getfixturevalue("fresh_postgres_db") if request.param == "postgres" else None
    settings = Settings(home=tmp_path / "home", event_store=request.param, postgres_dsn=dsn)
    first, second = System(settings), System(settings)
    yield first.app, second.app
    first.close()
    second.close()


def test_a_command_refused_by_an_outdated_copy_runs_again_on_a_fresh_one(
    writers: tuple[ProvenanceApp, ProvenanceApp],
) -> None:
    here, there = writers
    creator = here.register_person("carol")
    video = here.request_generation(creator, "a clip", command_id="req")
    here.record_render(video, rendered(), command_id="render")  # `here` caches the video as rendered
    there.record_moderation(video, moderation(), command_id="moderate")
    # Signing needs a moderated video: the cached copy says rendered, the store says moderated.
    assert here.record_signature(video, signature(video), command_id="sign")
    assert here.video(video).state == "signed" and there.video(video).state == "signed"


def test_a_save_from_an_outdated_copy_conflicts_and_runs_again(writers: tuple[ProvenanceApp, ProvenanceApp]) -> None:
    here, there = writers
    creator = here.register_person("dan")
    video = here.request_generation(creator, "a clip", command_id="req")
    here.record_render(video, rendered(), command_id="render")
    there.record_moderation(video, moderation(), command_id="moderate")
    # The same decision again from the outdated copy: recorded once, as the fresh copy knows it is done.
    assert not here.record_moderation(video, moderation(), command_id="moderate")
    versions = [e.originator_version for e in here.repository.event_store.get(video)]
    assert versions == list(range(1, len(versions) + 1)) and here.video(video).state == "moderated"


def test_a_refusal_that_the_store_confirms_is_not_retried(writers: tuple[ProvenanceApp, ProvenanceApp]) -> None:
    here, _ = writers
    creator = here.register_person("erin")
    video = here.request_generation(creator, "a clip", command_id="req")
    with pytest.raises(RuleViolation):
        here.record_signature(video, signature(video), command_id="sign")  # not rendered, not moderated
    assert here.video(video).state == "requested"


def test_a_cascade_takes_down_a_video_that_another_process_put_back_up(
    writers: tuple[ProvenanceApp, ProvenanceApp],
) -> None:
    here, there = writers
    alice, bob = here.register_person("alice"), here.register_person("bob")
    tess = here.register_person("tess", roles=["member", "trust_and_safety"])
    cameo = here.register_cameo(alice, face())
    grant = here.grant_consent(alice, cameo, "approved", grantees=[bob])
    video, other = publish_new(here, bob, cameo_ids=[cameo]), publish_new(here, bob, "a cat", cameo_ids=[cameo])
    [record] = here.take_down(video, alice, reason_code="likeness", statement_of_reasons="not this one")
    assert not here.video(video).is_live  # `here` caches it as taken down
    there.reinstate(video, record.case_id, tess, "the owner agreed after all")

    outcome = here.revoke_consent(alice, cameo, grant, "no more")
    assert {r.video_id for r in outcome.takedowns} == {str(video), str(other)}
    assert not there.video(video).is_live and not there.video(other).is_live


def test_processes_opening_a_postgres_log_run_its_definitions_one_at_a_time(
    tmp_path: Path, fresh_postgres_db: str
) -> None:
    """Two sessions replacing eventsourcing's functions at once fail ("tuple concurrently updated"), and a
    deployment starts several roles at once: a process opening the log waits while another session runs the
    definitions (here, one that holds their lock), then opens it and records."""
    import psycopg

    settings = Settings(home=tmp_path / "home", event_store="postgres", postgres_dsn=fresh_postgres_db)
    opened: list[ProvenanceApp] = []

    def open_log() -> None:
        opened.append(System(settings).app)

    open_log()  # the log exists, as when the relay made it before the roles start
    opened.pop().close()
    opening = threading.Thread(target=open_log, daemon=True)
    waiting = (
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND objid::bigint = %s "
        "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    )
    with psycopg.connect(fresh_postgres_db, autocommit=True) as watching, psycopg.connect(fresh_postgres_db) as holding:
        holding.execute("SELECT pg_advisory_xact_lock(%s)", (DEFINITIONS_LOCK,))
        opening.start()
        deadline = time.monotonic() + 30
        while watching.execute(waiting, (DEFINITIONS_LOCK & 0xFFFFFFFF,)).fetchone() != (1,):
            assert opening.is_alive(), "the log was opened without waiting for the definitions' lock"
            assert time.monotonic() < deadline, "no session waited for the definitions' lock"
            time.sleep(0.05)
        holding.commit()
    opening.join(60)
    assert not opening.is_alive() and opened
    [app] = opened
    person = app.register_person("erin")
    assert app.person_by_handle("erin").id == person
    app.close()
