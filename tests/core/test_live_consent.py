"""The product's promise: a likeness is on screen only under its owner's live consent, whatever ends it.

One regression test for each path that used to leave a video with a cameo live without any live grant.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from kernel.errors import CommandConflict, ConsentError
from provenance.application import ProvenanceApp
from provenance.bootstrap import System
from provenance.config import Settings
from provenance.domain.consent import uncovered_cameos
from tests.core.support import face, mutuals_with_a_video, publish_new


def test_revoking_the_last_of_two_everyone_grants_takes_the_video_down(app: ProvenanceApp, people: dict) -> None:
    alice, bob = people["alice"], people["bob"]
    cameo = app.register_cameo(alice, face())
    first = app.grant_consent(alice, cameo, "everyone")
    second = app.grant_consent(alice, cameo, "everyone")
    video = publish_new(app, bob, cameo_ids=[cameo])
    assert app.revoke_consent(alice, cameo, first, "one of two").takedowns == []
    assert app.video(video).is_live  # still covered by the second grant
    [record] = app.revoke_consent(alice, cameo, second, "no more").takedowns
    assert record.video_id == str(video) and record.source == "consent_revocation"
    assert not app.video(video).is_live


def test_revoking_the_grant_that_a_reinstatement_relied_on_takes_it_down_again(
    app: ProvenanceApp, people: dict
) -> None:
    alice, bob, tess = people["alice"], people["bob"], people["tess"]
    cameo = app.register_cameo(alice, face())
    grant = app.grant_consent(alice, cameo, "approved", grantees=[bob])
    video = publish_new(app, bob, cameo_ids=[cameo])
    [record] = app.revoke_consent(alice, cameo, grant, "no").takedowns
    renewed = app.grant_consent(alice, cameo, "approved", grantees=[bob])
    app.reinstate(video, record.case_id, tess, "consent granted again")
    assert app.video(video).is_live
    [again] = app.revoke_consent(alice, cameo, renewed, "no, really").takedowns
    assert again.video_id == str(video)
    assert not app.video(video).is_live


def test_no_case_is_reinstated_while_the_rule_does_not_hold(app: ProvenanceApp, people: dict) -> None:
    """A cascade or owner case used to skip the consent check that a revocation case got."""
    alice, bob, carol, tess = people["alice"], people["bob"], people["carol"], people["tess"]
    cameo = app.register_cameo(alice, face())
    grant = app.grant_consent(alice, cameo, "everyone")
    parent = publish_new(app, bob, cameo_ids=[cameo])
    remix = publish_new(app, carol, "remix", remix_of=parent)
    records = app.revoke_consent(alice, cameo, grant, "no").takedowns
    cascade = next(r for r in records if r.video_id == str(remix))
    assert cascade.source == "cascade"
    with pytest.raises(ConsentError, match="cannot be reinstated"):
        app.reinstate(remix, cascade.case_id, tess, "looks fine")
    assert not app.video(remix).is_live

    owner_case = publish_new(app, alice, "alice alone", cameo_ids=[cameo])
    [taken] = app.take_down(owner_case, alice, reason_code="mine", statement_of_reasons="I want it down")
    app.reinstate(owner_case, taken.case_id, tess, "the owner needs no grant")  # the rule holds: reinstated
    assert app.video(owner_case).is_live


def test_an_unfollow_that_ends_a_mutual_takes_the_videos_down(tmp_path: Path) -> None:
    system = System(Settings(home=tmp_path / "home", event_store="sqlite"))
    app = system.app
    alice, bob, _, video = mutuals_with_a_video(app)
    system.catch_up()
    app.unfollow(alice, bob)
    system.catch_up()
    after = app.video(video)
    assert not after.is_live
    [case] = after.open_cases()
    assert "no longer mutuals" in case.statement_of_reasons
    assert [v["video_id"] for v in system.reads.feed(limit=10)["items"]] == []
    system.catch_up()  # the watch runs again: nothing is recorded twice
    assert len(app.video(video).cases) == 1
    system.close()


def test_erasing_a_cameo_takes_down_every_video_and_deletes_the_encrypted_reference(
    app: ProvenanceApp, people: dict
) -> None:
    alice, bob, carol = people["alice"], people["bob"], people["carol"]
    cameo = app.register_cameo(alice, face())
    app.grant_consent(alice, cameo, "everyone")
    by_bob = publish_new(app, bob, cameo_ids=[cameo])
    by_alice = publish_new(app, alice, "alice herself", cameo_ids=[cameo])
    remix = publish_new(app, carol, "remix", remix_of=by_bob)
    blob_files = [p for p in app.blobs.root.rglob("*") if p.is_file()]
    assert len(blob_files) == 1  # the encrypted reference image
    outcome = app.erase_cameo(alice, cameo, "delete my likeness")
    assert {r.video_id for r in outcome.takedowns} == {str(by_bob), str(by_alice), str(remix)}
    assert all(not app.video(v).is_live for v in (by_bob, by_alice, remix))
    assert not blob_files[0].exists()
    erased = app.cameo(cameo).erasure_event_id
    case = app.video(by_bob).open_cases()[0]
    assert case.caused_by is not None and case.caused_by["event_id"] == erased


def test_an_expiry_is_recorded_by_the_timer_and_takes_the_video_down(tmp_path: Path) -> None:
    now = [datetime(2026, 1, 1, tzinfo=UTC)]
    system = System(Settings(home=tmp_path / "home", event_store="sqlite"), clock=lambda: now[0])
    app = system.app
    alice, bob = app.register_person("alice"), app.register_person("bob")
    cameo = app.register_cameo(alice, face())
    grant = app.grant_consent(alice, cameo, "everyone", expires_at=now[0] + timedelta(days=1))
    video = publish_new(app, bob, cameo_ids=[cameo])
    system.catch_up()
    assert app.video(video).is_live
    now[0] += timedelta(days=2)
    system.catch_up()
    after = app.video(video)
    assert not after.is_live
    [case] = after.open_cases()
    assert case.source == "consent_expiry" and case.reason_code == "consent_expired"
    assert app.cameo(cameo).grants[grant].expiry_event_id is not None
    audit = [entry["event_type"] for entry in system.reads.audit_trail(str(cameo))]
    assert "ConsentExpired" in audit
    system.catch_up()
    assert len(app.video(video).cases) == 1  # the timer records each expiry once
    system.close()


def test_a_command_id_reused_for_a_different_request_or_cameo_is_refused(app: ProvenanceApp, people: dict) -> None:
    alice, bob = people["alice"], people["bob"]
    video = app.request_generation(bob, "a ball", command_id="req-1")
    assert app.request_generation(bob, "a ball", command_id="req-1") == video  # same command: a no-op
    with pytest.raises(CommandConflict, match="already used for a different command"):
        app.request_generation(bob, "a cat", command_id="req-1")
    cameo = app.register_cameo(alice, face(), command_id="cameo-1")
    assert app.register_cameo(alice, face(), command_id="cameo-1") == cameo
    with pytest.raises(CommandConflict, match="already used for a different command"):
        app.register_cameo(alice, face(1), command_id="cameo-1")


def test_the_rule_is_one_function_of_the_state(app: ProvenanceApp, people: dict) -> None:
    alice, bob = people["alice"], people["bob"]
    cameo = app.register_cameo(alice, face())
    grant = app.grant_consent(alice, cameo, "approved", grantees=[bob])
    video = publish_new(app, bob, cameo_ids=[cameo])
    now = datetime.now(UTC)
    state = {str(cameo): app.cameo(cameo)}
    assert uncovered_cameos(app.video(video), state, now, app.are_mutuals) == []
    app.revoke_consent(alice, cameo, grant, "no")
    state = {str(cameo): app.cameo(cameo)}
    [reason] = uncovered_cameos(app.video(video), state, now, app.are_mutuals)
    assert "revoked" in reason


def test_the_key_store_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    from provenance.keystore import KeyStore

    store = KeyStore(f"sqlite:///{tmp_path / 'keys.db'}")
    assert not (tmp_path / "keys.db").exists()  # opened on first use only
    store.create_key()
    store.close()
    assert (tmp_path / "keys.db").stat().st_mode & 0o077 == 0


def test_a_destroyed_key_is_a_tombstone_and_a_key_the_store_never_held_is_a_setup_failure(tmp_path: Path) -> None:
    from uuid import uuid4

    from kernel.errors import InfrastructureFailure
    from provenance.keystore import KeyDestroyed, KeyMissing, KeyStore

    path = tmp_path / "keys.db"
    store = KeyStore(f"sqlite:///{path}")
    key_id = store.create_key()
    key = store._key(key_id)
    store.destroy(key_id)
    store.destroy(key_id)  # again: it stays destroyed
    for operation in (lambda: store.decrypt(key_id, b"\0" * 40, b""), lambda: store.encrypt(key_id, b"face", b"")):
        with pytest.raises(KeyDestroyed, match="destroyed"):
            operation()
    unknown = str(uuid4())
    with pytest.raises(KeyMissing) as caught:
        store.decrypt(unknown, b"\0" * 40, b"")
    assert isinstance(caught.value, InfrastructureFailure) and caught.value.exit_code == 6
    said = str(caught.value)
    assert unknown in said and str(path) in said and "backup" in said and "PROVENANCE_KEYS_URL" in said
    assert "was destroyed" not in said and "erased" not in said
    store.close()
    assert key not in path.read_bytes()  # secure_delete: the key's bytes are overwritten, its id kept


def test_a_missing_key_store_is_not_made_again_by_reading_it(tmp_path: Path) -> None:
    from provenance.keystore import KeyMissing, KeyStore

    path = tmp_path / "keys.db"
    store = KeyStore(f"sqlite:///{path}")
    key_id = store.create_key()
    store.close()
    path.rename(tmp_path / "keys.db.away")  # lost, or PROVENANCE_KEYS_URL forgotten
    for operation in (
        lambda: store.decrypt(key_id, b"\0" * 40, b""),
        lambda: store.encrypt(key_id, b"face", b""),
        lambda: store.destroy(key_id),
    ):
        with pytest.raises(KeyMissing, match="does not hold key"):
            operation()
    assert not path.exists()
    store.close()
    (tmp_path / "keys.db.away").rename(path)
    assert store.decrypt(key_id, store.encrypt(key_id, b"face", b""), b"") == b"face"
    store.close()


def test_the_key_store_named_in_an_error_hides_its_password() -> None:
    from provenance.keystore import KeyMissing

    said = str(KeyMissing.of("postgresql://keys:s3cret@db.internal/keys", "k1"))
    assert "s3cret" not in said and "db.internal/keys" in said and "k1" in said


def test_a_video_reinstated_under_a_newer_grant_is_back_in_the_feed(tmp_path: Path) -> None:
    """Found by the property test: the feed hid it by the expiry of the grant it was published under."""
    now = [datetime(2026, 1, 1, tzinfo=UTC)]
    system = System(Settings(home=tmp_path / "home", event_store="sqlite"), clock=lambda: now[0])
    app = system.app
    alice, bob = app.register_person("alice"), app.register_person("bob")
    tess = app.register_person("tess", roles=["member", "trust_and_safety"])
    cameo = app.register_cameo(alice, face())
    app.grant_consent(alice, cameo, "approved", grantees=[bob], expires_at=now[0] + timedelta(hours=1))
    video = publish_new(app, bob, cameo_ids=[cameo])
    now[0] += timedelta(hours=2)
    system.catch_up()
    [case] = app.video(video).open_cases()
    app.grant_consent(alice, cameo, "approved", grantees=[bob], expires_at=now[0] + timedelta(hours=1))
    app.reinstate(video, case.case_id, tess, "consent given again")
    system.catch_up()
    assert system.reads.feed_ids() == {str(video)}
    now[0] += timedelta(hours=2)  # the newer grant lapses too: the timer takes it down again
    system.catch_up()
    assert system.reads.feed_ids() == set() and not app.video(video).is_live
    system.close()


def test_taking_a_person_off_the_approved_list_takes_their_videos_down(app: ProvenanceApp, people: dict) -> None:
    alice, bob, carol = people["alice"], people["bob"], people["carol"]
    cameo = app.register_cameo(alice, face())
    grant = app.grant_consent(alice, cameo, "approved", grantees=[bob, carol])
    bobs, carols = publish_new(app, bob, cameo_ids=[cameo]), publish_new(app, carol, cameo_ids=[cameo])
    [record] = app.remove_grantee(alice, cameo, grant, bob).takedowns
    assert record.video_id == str(bobs) and not app.video(bobs).is_live
    assert app.video(carols).is_live  # still on the list
    [case] = app.video(bobs).open_cases()
    assert case.reason_code == "consent_narrowed" and "approved list" in case.statement_of_reasons
    with pytest.raises(ConsentError):
        app.request_generation(bob, "again", cameo_ids=[cameo])
    assert app.remove_grantee(alice, cameo, grant, bob).takedowns == []  # not on the list any more: nothing


def test_a_cameo_a_remix_adds_is_held_to_generate_consent_as_its_request_was(app: ProvenanceApp, people: dict) -> None:
    alice, bob, carol = people["alice"], people["bob"], people["carol"]
    cameo = app.register_cameo(alice, face())
    generate_only = app.grant_consent(alice, cameo, "everyone", scope=["generate"])
    original = publish_new(app, bob, "a ball")
    remix = publish_new(app, carol, "a ball, with alice", remix_of=original, cameo_ids=[cameo])  # not refused now
    remix_only = app.grant_consent(alice, cameo, "everyone", scope=["remix"])
    below = publish_new(app, bob, "again", remix_of=remix)  # inherits alice: used under remix consent
    assert app.video(remix).cameos[0].grant_id == generate_only and app.video(below).cameos[0].grant_id == remix_only

    outcome = app.revoke_consent(alice, cameo, generate_only, "no new videos of me")
    assert {t.video_id for t in outcome.takedowns} == {str(remix), str(below)}  # below, in the cascade
    assert not app.video(remix).is_live
    with pytest.raises(ConsentError, match="revoked"):
        app.request_generation(carol, "once more", remix_of=original, cameo_ids=[cameo])
