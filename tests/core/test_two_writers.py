"""Two processes writing to one event store: a command in one never decides from a copy the other has outdated.

The aggregate a command changes is taken from the process's cache as it is; these tests hold the guarantees
that make that safe: a save from an outdated copy conflicts and runs again on a fresh one, and a command that
refuses or has nothing to do checks its copy before it answers.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from kernel.errors import ConsentError, RuleViolation
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


# --- a reinstatement racing what ends the rule it checked (write skew: each reads what the other writes) ---


def _first_time(meanwhile: Callable[[], object]) -> Callable[[], None]:
    """`meanwhile` on the first call only (a command run again on fresh copies must not repeat it)."""
    done: list[bool] = []

    def once() -> None:
        if not done:
            done.append(True)
            meanwhile()

    return once


def _after_the_check(app: ProvenanceApp, meanwhile: Callable[[], object], monkeypatch: pytest.MonkeyPatch) -> None:
    """Have `meanwhile` commit in the other process right after `app`'s consent check, before `app` saves."""
    check, once = app.why_not_live, _first_time(meanwhile)

    def checked_then_interleaved(video: Any, now: Any) -> list[str]:
        reasons = check(video, now)
        once()
        return reasons

    monkeypatch.setattr(app, "why_not_live", checked_then_interleaved)


def _before_the_commit(app: ProvenanceApp, meanwhile: Callable[[], object], monkeypatch: pytest.MonkeyPatch) -> None:
    """Have `meanwhile` commit in the other process after `app` decided (and checked its copies), before it records."""
    record, once = app._record, _first_time(meanwhile)

    def interleaved_then_recorded(processing: Any) -> Any:
        once()
        return record(processing)

    monkeypatch.setattr(app, "_record", interleaved_then_recorded)


def _down_under_a_case(app: ProvenanceApp, video: UUID) -> None:
    """The rule holds for this video: it is not live, and a case on record says it is down."""
    fresh = app.video(video)
    assert not fresh.is_live and fresh.open_cases()


def _a_cameo_video_down_for_spam(here: ProvenanceApp) -> tuple[UUID, UUID, UUID, str, str, UUID]:
    alice, bob = here.register_person("alice"), here.register_person("bob")
    tess = here.register_person("tess", roles=["member", "trust_and_safety"])
    cameo = here.register_cameo(alice, face())
    grant = here.grant_consent(alice, cameo, "approved", grantees=[bob])
    video = publish_new(here, bob, cameo_ids=[cameo])
    [record] = here.take_down(video, tess, reason_code="spam", statement_of_reasons="looked like spam")
    return alice, tess, cameo, grant, record.case_id, video


def _end_consent(app: ProvenanceApp, ending: str, alice: UUID, cameo: UUID, grant: str) -> Any:
    if ending == "revoke":
        return app.revoke_consent(alice, cameo, grant, "no more")
    return app.erase_cameo(alice, cameo, "delete my face")


@pytest.mark.parametrize("ending", ["revoke", "erase"])
def test_a_reinstatement_checked_before_consent_ended_in_another_process_is_refused(
    writers: tuple[ProvenanceApp, ProvenanceApp], monkeypatch: pytest.MonkeyPatch, ending: str
) -> None:
    here, there = writers
    alice, tess, cameo, grant, case_id, video = _a_cameo_video_down_for_spam(here)
    _after_the_check(there, lambda: _end_consent(here, ending, alice, cameo, grant), monkeypatch)
    with pytest.raises(ConsentError):
        there.reinstate(video, case_id, tess, "not spam after all")
    _down_under_a_case(here, video)
    _down_under_a_case(there, video)


@pytest.mark.parametrize("ending", ["revoke", "erase"])
def test_consent_ended_from_a_copy_taken_before_another_process_reinstated_takes_the_video_down(
    writers: tuple[ProvenanceApp, ProvenanceApp], monkeypatch: pytest.MonkeyPatch, ending: str
) -> None:
    here, there = writers
    alice, tess, cameo, grant, case_id, video = _a_cameo_video_down_for_spam(here)
    _before_the_commit(here, lambda: there.reinstate(video, case_id, tess, "not spam after all"), monkeypatch)
    outcome = _end_consent(here, ending, alice, cameo, grant)
    assert [r.video_id for r in outcome.takedowns] == [str(video)]
    _down_under_a_case(there, video)


def _a_remix_down_for_spam(here: ProvenanceApp) -> tuple[UUID, UUID, UUID, str]:
    bob, carol = here.register_person("bob"), here.register_person("carol")
    tess = here.register_person("tess", roles=["member", "trust_and_safety"])
    parent = publish_new(here, bob, "a ball")
    child = publish_new(here, carol, "a ball, remixed", remix_of=parent)
    [record] = here.take_down(child, tess, reason_code="spam", statement_of_reasons="spam")
    return tess, parent, child, record.case_id


def test_a_remix_reinstatement_checked_before_its_parent_came_down_in_another_process_is_refused(
    writers: tuple[ProvenanceApp, ProvenanceApp], monkeypatch: pytest.MonkeyPatch
) -> None:
    here, there = writers
    tess, parent, child, case_id = _a_remix_down_for_spam(here)

    def take_parent_down() -> None:
        here.take_down(parent, tess, reason_code="violence", statement_of_reasons="gore")

    _after_the_check(there, take_parent_down, monkeypatch)
    with pytest.raises(ConsentError):
        there.reinstate(child, case_id, tess, "not spam")
    _down_under_a_case(here, parent)
    _down_under_a_case(here, child)


def test_a_parent_taken_down_from_a_copy_taken_before_its_remix_was_reinstated_takes_the_remix_down(
    writers: tuple[ProvenanceApp, ProvenanceApp], monkeypatch: pytest.MonkeyPatch
) -> None:
    here, there = writers
    tess, parent, child, case_id = _a_remix_down_for_spam(here)
    _before_the_commit(here, lambda: there.reinstate(child, case_id, tess, "not spam"), monkeypatch)
    records = here.take_down(parent, tess, reason_code="violence", statement_of_reasons="gore")
    assert [(r.video_id, r.source) for r in records] == [(str(parent), "own_initiative"), (str(child), "cascade")]
    _down_under_a_case(there, parent)
    _down_under_a_case(there, child)


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


def test_a_reinstatement_checked_before_an_unfollow_ended_the_mutual_in_another_process_comes_down(
    writers: tuple[ProvenanceApp, ProvenanceApp], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unfollow records nothing on the cameo, so it cannot conflict with the reinstatement; the consent watch's
    re-check after it ran while the video was still down. The reinstatement's own re-check, after it commits,
    sees the unfollow."""
    from tests.core.support import face, mutuals_with_a_video, publish_new

    here, there = writers
    alice, bob, cameo, _ = mutuals_with_a_video(here)
    carol = here.register_person("carol")
    covered = here.register_cameo(carol, face(2))  # a likeness whose consent never lapses
    here.grant_consent(carol, covered, "everyone")
    video = publish_new(here, bob, "bob, carol and alice", cameo_ids=[covered, cameo])
    tess = here.register_person("tess", roles=["member", "trust_and_safety"])
    [record] = here.take_down(video, tess, reason_code="spam", statement_of_reasons="looked like spam")

    def unfollow_and_watch() -> None:
        there.unfollow(bob, alice)
        there.recheck_consent(cameo, because="no longer mutuals", cause=None, command_id="watch")  # as the watch

    _after_the_check(here, unfollow_and_watch, monkeypatch)
    here.reinstate(video, record.case_id, tess, "it was not spam")
    assert not there.video(video).is_live
    [case] = [c for c in there.video(video).open_cases() if "checked again" in c.statement_of_reasons]
    assert str(cameo) in case.statement_of_reasons and str(covered) not in case.statement_of_reasons
