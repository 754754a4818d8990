"""The rules of the domain, and bad input to every command: each refused with a clear error, nothing recorded."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID, uuid4

import pytest

from kernel.errors import (
    CommandConflict,
    ConsentError,
    InvalidInput,
    InvalidTransition,
    NotFound,
    NotPermitted,
    RuleViolation,
)
from provenance.application import ProvenanceApp
from tests.core.support import face, moderation, pass_gates, publish_new, rendered, signature


def recorded(app: ProvenanceApp) -> int:
    return app.recorder.max_notification_id() or 0


def test_unknown_ids_are_refused(app: ProvenanceApp, people: dict) -> None:
    before = recorded(app)
    with pytest.raises(NotFound):
        app.request_generation(uuid4(), "a ball")
    with pytest.raises(NotFound):
        app.request_generation(people["bob"], "a ball", cameo_ids=[uuid4()])
    with pytest.raises(NotFound):
        app.request_generation(people["bob"], "a ball", remix_of=uuid4())
    with pytest.raises(NotFound):
        app.record_render(uuid4(), rendered(), command_id="x")
    with pytest.raises(InvalidInput, match="not a valid id"):  # malformed: bad input, not an unknown id
        app.grant_consent(people["alice"], "not-a-uuid", "everyone")
    with pytest.raises(NotFound, match="is a person, not a video"):
        app.publish(people["alice"])
    assert recorded(app) == before


def test_malformed_input_is_refused(app: ProvenanceApp, people: dict) -> None:
    bob = people["bob"]
    before = recorded(app)
    for prompt in ("", "x" * 1001):
        with pytest.raises(InvalidInput, match="prompt"):
            app.request_generation(bob, prompt)
    for parameters in ({"width": 63}, {"height": 101}, {"fps": 0}, {"duration_s": 3600}, {"colour": "red"}):
        with pytest.raises(InvalidInput, match="parameters"):
            app.request_generation(bob, "a ball", parameters=parameters)
    with pytest.raises(InvalidInput):
        app.request_generation(bob, "a ball", seed=-1)
    with pytest.raises(InvalidInput, match="handle"):
        app.register_person("no spaces please")
    with pytest.raises(InvalidInput, match="empty"):
        app.register_cameo(bob, b"")
    assert recorded(app) == before
    video = app.request_generation(bob, "a ball")
    with pytest.raises(InvalidInput, match="content_sha256"):
        app.record_render(video, rendered(content_sha256="nope"), command_id="r")


def test_consent_is_needed_at_request_and_checked_again_at_publish(app: ProvenanceApp, people: dict) -> None:
    alice, bob, carol = people["alice"], people["bob"], people["carol"]
    cameo = app.register_cameo(alice, face())
    with pytest.raises(ConsentError, match="has not granted"):
        app.request_generation(bob, "me and alice", cameo_ids=[cameo])
    grant = app.grant_consent(alice, cameo, "approved", grantees=[bob])
    with pytest.raises(ConsentError):
        app.request_generation(carol, "carol too", cameo_ids=[cameo])
    video = app.request_generation(bob, "me and alice", cameo_ids=[cameo])
    pass_gates(app, video)
    app.revoke_consent(alice, cameo, grant, "changed my mind")  # blocks the video in flight
    assert app.video(video).state == "blocked"
    assert "revoked" in app.video(video).block_reasons[0]


def test_consent_revoked_between_signing_and_publish_blocks_the_publish(app: ProvenanceApp, people: dict) -> None:
    alice, bob = people["alice"], people["bob"]
    cameo = app.register_cameo(alice, face())
    app.grant_consent(alice, cameo, "everyone", expires_at=datetime.now(UTC) + timedelta(hours=1))
    video = app.request_generation(bob, "with alice", cameo_ids=[cameo])
    pass_gates(app, video)
    app.clock = lambda: datetime.now(UTC) + timedelta(hours=2)  # the grant has expired by publish time
    outcome = app.publish(video)
    assert not outcome.published
    assert "expired" in outcome.reasons[0]
    assert app.video(video).state == "blocked"


def test_mutuals_audience_follows_the_social_graph(app: ProvenanceApp, people: dict) -> None:
    alice, bob = people["alice"], people["bob"]
    cameo = app.register_cameo(alice, face())
    app.grant_consent(alice, cameo, "mutuals")
    app.follow(bob, alice)
    with pytest.raises(ConsentError):
        app.request_generation(bob, "one-way follow is not enough", cameo_ids=[cameo])
    app.follow(alice, bob)
    assert app.request_generation(bob, "mutuals now", cameo_ids=[cameo])
    app.unfollow(alice, bob)
    with pytest.raises(ConsentError):
        app.request_generation(bob, "not any more", cameo_ids=[cameo])


def test_scope_separates_generation_from_remixing(app: ProvenanceApp, people: dict) -> None:
    alice, bob, carol = people["alice"], people["bob"], people["carol"]
    cameo = app.register_cameo(alice, face())
    app.grant_consent(alice, cameo, "approved", grantees=[bob], scope=["generate"])
    original = publish_new(app, bob, cameo_ids=[cameo])
    with pytest.raises(ConsentError, match="does not cover 'remix'"):
        app.request_generation(bob, "remix of my own", remix_of=original)
    with pytest.raises(ConsentError, match="has not granted"):
        app.request_generation(carol, "remix", remix_of=original)
    app.grant_consent(alice, cameo, "everyone", scope=["remix"])
    assert app.request_generation(carol, "remix", remix_of=original)


def test_acting_on_someone_elses_cameo_is_refused(app: ProvenanceApp, people: dict) -> None:
    alice, bob = people["alice"], people["bob"]
    cameo = app.register_cameo(alice, face())
    grant = app.grant_consent(alice, cameo, "everyone")
    with pytest.raises(NotPermitted):
        app.grant_consent(bob, cameo, "everyone")
    with pytest.raises(NotPermitted):
        app.revoke_consent(bob, cameo, grant, "not mine")
    with pytest.raises(NotPermitted):
        app.erase_cameo(bob, cameo, "not mine")
    with pytest.raises(NotPermitted):
        app.videos_with_cameo(bob, cameo)


def test_gate_results_out_of_order_are_refused(app: ProvenanceApp, people: dict) -> None:
    video = app.request_generation(people["bob"], "a ball")
    with pytest.raises(InvalidTransition, match="requested"):
        app.record_signature(video, signature(video), command_id="s")
    with pytest.raises(InvalidTransition):
        app.record_moderation(video, moderation(), command_id="m")
    with pytest.raises(InvalidTransition, match="needs it to be signed"):
        app.publish(video)
    app.record_render(video, rendered(), command_id="r")
    with pytest.raises(InvalidTransition):
        app.record_render(video, rendered(), command_id="r2")
    app.record_moderation(video, moderation("block"), command_id="m")
    assert app.video(video).state == "blocked"
    with pytest.raises(InvalidTransition):
        app.record_signature(video, signature(video), command_id="s")


def test_review_verdict_holds_the_video_until_a_person_decides(app: ProvenanceApp, people: dict) -> None:
    video = app.request_generation(people["bob"], "a ball")
    app.record_render(video, rendered(), command_id="r")
    app.record_moderation(video, moderation("review"), command_id="m")
    with pytest.raises(InvalidTransition, match="review"):
        app.record_signature(video, signature(video), command_id="s")
    with pytest.raises(NotPermitted):
        app.record_moderation(video, moderation("allow"), command_id="m2", actor=str(people["bob"]))
    app.record_moderation(video, moderation("allow"), command_id="m2", actor=str(people["tess"]))
    app.record_signature(video, signature(video), command_id="s")
    assert app.publish(video).published


def test_a_command_id_reused_for_something_else_is_an_error(app: ProvenanceApp, people: dict) -> None:
    video = app.request_generation(people["bob"], "a ball")
    app.record_render(video, rendered(), command_id="r")
    with pytest.raises(CommandConflict):
        app.record_render(video, rendered(size_bytes=99), command_id="r")


def test_takedown_rights_appeal_and_reinstatement(app: ProvenanceApp, people: dict) -> None:
    alice, bob, carol, tess = people["alice"], people["bob"], people["carol"], people["tess"]
    cameo = app.register_cameo(alice, face())
    app.grant_consent(alice, cameo, "everyone")
    video = publish_new(app, bob, cameo_ids=[cameo])
    with pytest.raises(NotPermitted):
        app.take_down(video, carol, reason_code="spam", statement_of_reasons="I do not like it")
    [record] = app.take_down(video, alice, reason_code="likeness", statement_of_reasons="that is my face")
    assert record.source == "cameo_owner"
    with pytest.raises(RuleViolation, match="not live"):
        app.take_down(video, tess, reason_code="x", statement_of_reasons="again")
    with pytest.raises(RuleViolation, match="only the creator"):
        app.appeal(video, record.case_id, carol, "not mine")
    app.appeal(video, record.case_id, bob, "the owner consented to everyone")
    with pytest.raises(NotPermitted):
        app.reinstate(video, record.case_id, bob, "I say so")
    app.reinstate(video, record.case_id, tess, "consent was live")
    assert app.video(video).is_live
    with pytest.raises(RuleViolation, match="already resolved"):
        app.reinstate(video, record.case_id, tess, "again")


def test_reinstating_a_revocation_takedown_needs_live_consent(app: ProvenanceApp, people: dict) -> None:
    alice, bob, tess = people["alice"], people["bob"], people["tess"]
    cameo = app.register_cameo(alice, face())
    grant = app.grant_consent(alice, cameo, "approved", grantees=[bob])
    video = publish_new(app, bob, cameo_ids=[cameo])
    [record] = app.revoke_consent(alice, cameo, grant, "no").takedowns
    with pytest.raises(ConsentError):
        app.reinstate(video, record.case_id, tess, "please")
    app.grant_consent(alice, cameo, "approved", grantees=[bob])
    app.reinstate(video, record.case_id, tess, "consent granted again")
    assert app.video(video).is_live


def test_erasure_destroys_the_key_and_blocks_further_use(app: ProvenanceApp, people: dict) -> None:
    alice, bob = people["alice"], people["bob"]
    cameo = app.register_cameo(alice, face())
    app.grant_consent(alice, cameo, "everyone")
    key_id = app.cameo(cameo).key_id
    app.erase_cameo(alice, cameo, "delete my likeness")
    with pytest.raises(ConsentError, match="erased"):
        app.cameo_reference(cameo)
    with pytest.raises(ConsentError, match="erased"):
        app.request_generation(bob, "with alice", cameo_ids=[cameo])
    from provenance.keystore import KeyDestroyed

    with pytest.raises(KeyDestroyed):
        app.keystore.decrypt(key_id, b"\0" * 40, b"")
    stored = b"".join(n.state for n in app.recorder.select_notifications(start=1, limit=100))
    assert face()[-64:] not in stored  # the likeness was only ever recorded encrypted


def _keys_db(app: ProvenanceApp) -> Path:
    from provenance.keystore import KeyStore

    assert isinstance(app.keystore, KeyStore)
    app.keystore.close()
    return Path(app.keystore.url.removeprefix("sqlite:///"))


def test_a_lost_key_store_is_a_setup_failure_never_an_erasure(app: ProvenanceApp, people: dict) -> None:
    from kernel.errors import InfrastructureFailure
    from provenance.keystore import KeyDestroyed

    alice = people["alice"]
    cameo = app.register_cameo(alice, face())
    app.grant_consent(alice, cameo, "everyone")
    keys = _keys_db(app)
    keys.rename(keys.with_name("keys.db.away"))
    before = recorded(app)
    for attempt in (lambda: app.cameo_reference(cameo), lambda: app.erase_cameo(alice, cameo, "delete my likeness")):
        with pytest.raises(InfrastructureFailure, match="does not hold key") as caught:
            attempt()
        assert not isinstance(caught.value, KeyDestroyed) and "restore the key store" in str(caught.value)
    assert recorded(app) == before and not app.cameo(cameo).erased
    assert not keys.exists()  # not made again, empty, in its place
    _keys_db(app)
    keys.with_name("keys.db.away").rename(keys)
    assert app.cameo_reference(cameo) == face()


def test_a_key_erased_by_an_earlier_version_still_reads_as_erased(app: ProvenanceApp, people: dict) -> None:
    """Earlier versions deleted a destroyed key's row and left no tombstone: the cameo's erasure, on record,
    is what every reader asks first."""
    import sqlalchemy as sa

    from provenance.keystore import KeyDestroyed

    alice, bob = people["alice"], people["bob"]
    cameo = app.register_cameo(alice, face())
    app.grant_consent(alice, cameo, "everyone")
    key_id = app.cameo(cameo).key_id
    app.erase_cameo(alice, cameo, "delete my likeness")
    engine = sa.create_engine(app.keystore.url)  # type: ignore[attr-defined]
    with engine.begin() as conn:
        assert conn.execute(sa.text("DELETE FROM destroyed_keys WHERE key_id = :k"), {"k": key_id}).rowcount == 1
    engine.dispose()
    with pytest.raises(ConsentError, match="erased"):
        app.cameo_reference(cameo)
    with pytest.raises(ConsentError, match="erased"):
        app.request_generation(bob, "with alice", cameo_ids=[cameo])
    before = recorded(app)
    app.erase_cameo(alice, cameo, "delete my likeness")  # run again: it finishes, and leaves the tombstone
    assert recorded(app) == before
    with pytest.raises(KeyDestroyed):
        app.keystore.decrypt(key_id, b"\0" * 40, b"")


def test_remixing_a_taken_down_video_is_refused(app: ProvenanceApp, people: dict) -> None:
    video = publish_new(app, people["bob"])
    app.take_down(video, people["tess"], reason_code="spam", statement_of_reasons="spam")
    with pytest.raises(RuleViolation, match="cannot be remixed"):
        app.request_generation(people["carol"], "remix", remix_of=video)


def test_reasons_on_record_must_say_something(app: ProvenanceApp, people: dict) -> None:
    alice, bob, tess = people["alice"], people["bob"], people["tess"]
    cameo = app.register_cameo(alice, face())
    grant = app.grant_consent(alice, cameo, "everyone")
    video = publish_new(app, bob, cameo_ids=[cameo])
    before = recorded(app)
    blank = "\u200b \t\n\u3164\u2800\u034f"  # zero-width space, blanks, a Hangul filler, blank Braille, a joiner
    for attempt in (
        lambda: app.take_down(video, tess, reason_code=" ", statement_of_reasons="spam"),
        lambda: app.take_down(video, tess, reason_code="spam", statement_of_reasons=blank),
        lambda: app.revoke_consent(alice, cameo, grant, blank),
        lambda: app.erase_cameo(alice, cameo, ""),
    ):
        with pytest.raises(InvalidInput, match="blank"):
            attempt()
    assert recorded(app) == before and app.video(video).is_live
    [record] = app.take_down(video, tess, reason_code="spam", statement_of_reasons="spam")
    for attempt in (
        lambda: app.appeal(video, record.case_id, bob, blank),
        lambda: app.reinstate(video, record.case_id, tess, "   "),
    ):
        with pytest.raises(InvalidInput, match="blank"):
            attempt()
    assert not app.video(video).is_live


def test_a_retried_takedown_answers_what_it_recorded_and_its_id_reused_for_another_is_refused(
    app: ProvenanceApp, people: dict
) -> None:
    bob, tess = people["bob"], people["tess"]
    video = app.request_generation(bob, "a ball", command_id="k1")
    pass_gates(app, video)
    app.publish(video)
    remix = publish_new(app, bob, "a remix", remix_of=video)
    with pytest.raises(CommandConflict):  # the id of the video's own request: not a takedown's
        app.take_down(video, tess, reason_code="spam", statement_of_reasons="spam", command_id="k1")
    assert app.video(video).is_live
    first = app.take_down(video, tess, reason_code="spam", statement_of_reasons="spam", command_id="k2")
    assert [r.video_id for r in first] == [str(video), str(remix)]
    before = recorded(app)
    assert app.take_down(video, tess, reason_code="spam", statement_of_reasons="spam", command_id="k2") == first
    with pytest.raises(CommandConflict):  # the same id with other reasons
        app.take_down(video, tess, reason_code="copyright", statement_of_reasons="a notice", command_id="k2")
    assert recorded(app) == before


def test_an_erasure_run_again_finishes_the_clean_up_a_crash_interrupted(
    app: ProvenanceApp, people: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    from provenance.keystore import KeyDestroyed

    alice = people["alice"]
    cameo = app.register_cameo(alice, face())
    key_id = app.cameo(cameo).key_id

    def crash(*_: object) -> None:
        raise KeyboardInterrupt  # the process dies after the erasure was recorded, before the clean-up

    with monkeypatch.context() as patched:
        patched.setattr(app.blobs, "delete", crash)
        with pytest.raises(KeyboardInterrupt):
            app.erase_cameo(alice, cameo, "delete my likeness")
    assert app.cameo(cameo).erased
    assert app.keystore.decrypt(key_id, app.keystore.encrypt(key_id, b"face", b""), b"") == b"face"  # the key lives
    before = recorded(app)
    app.erase_cameo(alice, cameo, "delete my likeness")  # as the command line runs it again: a new command id
    assert recorded(app) == before
    with pytest.raises(KeyDestroyed):
        app.keystore.decrypt(key_id, b"\0" * 40, b"")
    with pytest.raises(NotPermitted):
        app.erase_cameo(people["bob"], cameo, "not mine")


def test_an_erasure_deletes_the_files_that_show_the_likeness(app: ProvenanceApp, people: dict) -> None:
    from kernel.blobstore import export

    alice, bob = people["alice"], people["bob"]
    cameo = app.register_cameo(alice, face())
    app.grant_consent(alice, cameo, "everyone")

    def published_with_files(prompt: str, **request: object) -> tuple[UUID, list[str]]:
        video = app.request_generation(bob, prompt, **request)  # type: ignore[arg-type]
        render, signed = (app.blobs.put_bytes(f"{prompt}: {kind}".encode()) for kind in ("render", "signed"))
        app.record_render(video, rendered(blob_uri=render.uri, content_sha256=render.sha256), command_id="r")
        app.record_moderation(video, moderation(), command_id="m")
        signed_payload = signature(video).model_copy(update={"signed_uri": signed.uri, "signed_sha256": signed.sha256})
        app.record_signature(video, signed_payload, command_id="s")
        assert app.publish(video).published
        export(app.blobs, signed.uri, app.exported_videos / f"{video}.mp4")  # as the command line names it
        return video, [render.sha256, signed.sha256]

    with_face, its_files = published_with_files("bob with alice", cameo_ids=[cameo])
    _, remix_files = published_with_files("a remix", remix_of=with_face)  # inherits the likeness
    without, other_files = published_with_files("bob alone")
    app.erase_cameo(alice, cameo, "delete my likeness")

    assert not any(app.blobs.exists(sha) for sha in its_files + remix_files)
    assert not (app.exported_videos / f"{with_face}.mp4").exists()
    assert all(app.blobs.exists(sha) for sha in other_files) and (app.exported_videos / f"{without}.mp4").exists()
    assert app.video(with_face).signature is not None  # the record of the file stays


def test_a_handle_that_reads_as_another_is_refused(app: ProvenanceApp, people: dict) -> None:
    app.register_person("trust-and-safety")
    before = recorded(app)
    for look_alike in (
        "trust-and-safety\u3164",
        "trust-and\uffa0-safety",
        "administrat\u0585r",
        "adm\u0131nistrator",
        "tess\n",
        " \x1ftess\u2028",
    ):
        with pytest.raises(InvalidInput, match="ASCII letters"):  # a filler, an Armenian o, a dotless i
            app.register_person(look_alike)
    with pytest.raises(RuleViolation, match="taken"):
        app.register_person("\u0430lice")  # a Cyrillic a: the same skeleton as alice's
    assert recorded(app) == before
    assert app.register_person("\uff42\uff45\uff4e") == app.person_by_handle("ben").id  # full-width: ben


def test_a_prompt_the_renderer_could_not_take_is_refused_before_anything_is_recorded(
    app: ProvenanceApp, people: dict
) -> None:
    before = recorded(app)
    for prompt in ("   ", "a\x00b", "\x01\x02\x1b", "\u200b\u202e", "x" * 1001):
        with pytest.raises(InvalidInput, match="prompt"):
            app.request_generation(people["bob"], prompt)
    assert recorded(app) == before


def test_a_retried_request_is_the_same_request_as_recorded_or_a_conflict(app: ProvenanceApp, people: dict) -> None:
    bob, tess = people["bob"], people["tess"]
    small = {"duration_s": 1, "fps": 8, "width": 144, "height": 256}
    video = app.request_generation(bob, "a cat", parameters=small, seed=5, command_id="k1")
    assert app.request_generation(bob, "a cat", parameters=small, seed=5, command_id="k1") == video
    for other in ({"parameters": None, "seed": 5}, {"parameters": small, "seed": None}):  # defaults are not small
        with pytest.raises(CommandConflict):
            app.request_generation(bob, "a cat", command_id="k1", **other)  # type: ignore[arg-type]
    parent = publish_new(app, bob)
    remix = app.request_generation(bob, "a remix", remix_of=parent, command_id="k2")
    app.take_down(parent, tess, reason_code="spam", statement_of_reasons="spam")
    assert app.request_generation(bob, "a remix", remix_of=parent, command_id="k2") == remix  # its answer was lost


def test_a_remix_chain_has_a_length_it_cannot_pass(app: ProvenanceApp, people: dict) -> None:
    from provenance.application import videos

    bob = people["bob"]
    chain = [publish_new(app, bob, "the original")]
    while len(chain) < videos.MAX_REMIX_DEPTH:
        chain.append(publish_new(app, bob, f"remix {len(chain)}", remix_of=chain[-1]))
    before = recorded(app)
    with pytest.raises(RuleViolation, match=f"at most {videos.MAX_REMIX_DEPTH} videos"):
        app.request_generation(bob, "one more", remix_of=chain[-1])
    assert recorded(app) == before
    app.request_generation(bob, "a remix of an earlier one", remix_of=chain[-2])
