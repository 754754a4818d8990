"""A cameo made from someone else's face is held: it grants nothing and blocks none of the real owner's videos."""

from __future__ import annotations

from pathlib import Path

import pytest

from devkit.clip import synthesize_face
from kernel.errors import ConsentError, NotPermitted, RuleViolation
from provenance.application import ProvenanceApp
from provenance.application.service import OPERATOR
from provenance.bootstrap import System
from provenance.config import Settings
from provenance.stages import encode_png
from tests.core.support import face, publish_new


def test_a_held_cameo_grants_nothing_until_cleared_and_never_once_rejected(app: ProvenanceApp, people: dict) -> None:
    alice, bob, tess = people["alice"], people["bob"], people["tess"]
    real = app.register_cameo(alice, face())
    app.grant_consent(alice, real, "everyone")
    fake = app.register_cameo(bob, face(5))
    app.hold_cameo(fake, str(real), 0.97)
    with pytest.raises(RuleViolation, match="cannot grant"):
        app.grant_consent(bob, fake, "everyone")
    with pytest.raises(ConsentError, match="held for a trust-and-safety review"):
        app.request_generation(bob, "me", cameo_ids=[fake])  # not even its registrant may use it
    assert publish_new(app, people["carol"], "with alice", cameo_ids=[real])  # the real owner's grants still work
    with pytest.raises(NotPermitted):
        app.review_cameo(fake, bob, "cleared", "it is me")
    app.review_cameo(fake, tess, "cleared", "a twin: checked in person")
    assert app.cameo(fake).is_active
    app.grant_consent(bob, fake, "everyone")

    other = app.register_cameo(bob, face(6))
    app.hold_cameo(other, str(real), 0.99)
    app.review_cameo(other, tess, "rejected", "a photo of alice")
    with pytest.raises(ConsentError, match="rejected"):
        app.request_generation(bob, "me", cameo_ids=[other])


def test_registration_holds_a_face_that_matches_another_persons_cameo(tmp_path: Path) -> None:
    system = System(Settings(home=tmp_path / "home", event_store="sqlite"))
    app = system.app
    alice, mallory, bob = (app.register_person(h) for h in ("alice", "mallory", "bob"))
    alices = encode_png(synthesize_face(0, 256))
    real = app.register_cameo(alice, alices)
    assert system.verify_cameo(real) is None  # the first of a face is active
    assert system.verify_cameo(app.register_cameo(alice, alices)) is None  # a second of one's own face too
    stolen = app.register_cameo(mallory, alices)
    held = system.verify_cameo(stolen)
    assert held is not None and str(real) in held
    assert system.verify_cameo(app.register_cameo(bob, encode_png(synthesize_face(3, 256)))) is None
    system.close()


def test_a_held_or_rejected_cameo_takes_down_every_video_with_it_its_owners_own_too(tmp_path: Path) -> None:
    system = System(Settings(home=tmp_path / "home", event_store="sqlite"))
    app = system.app
    alice, bob, tess = (app.register_person(h) for h in ("alice", "bob", "tess"))
    app.change_role(OPERATOR, tess, "trust_and_safety", grant=True)
    cameo = app.register_cameo(alice, face())
    app.grant_consent(alice, cameo, "everyone")
    videos = [publish_new(app, bob, "with alice", cameo_ids=[cameo]), publish_new(app, alice, "me", cameo_ids=[cameo])]
    remix = publish_new(app, bob, "again", remix_of=videos[0])
    in_flight = app.request_generation(bob, "later", cameo_ids=[cameo])
    system.catch_up()
    assert len(system.reads.feed_ids()) == 3

    other = str(app.register_cameo(tess, face(5)))
    app.hold_cameo(cameo, other, 0.98)
    system.catch_up()
    hold = app.cameo(cameo).standing_event_id
    for video_id in videos:
        (case,) = app.video(video_id).open_cases()
        assert (case.reason_code, case.source) == ("cameo_held", "consent_revocation")
        assert case.caused_by == {"event_id": hold, "stream_id": str(cameo)}
    assert app.video(remix).open_cases()[0].source == "cascade"
    assert app.video(in_flight).state == "blocked" and "held for review" in app.video(in_flight).block_reasons[0]
    assert not system.reads.feed_ids()
    assert app.hold_cameo(cameo, other, 0.98) is False  # once

    app.review_cameo(cameo, tess, "rejected", "a photo of someone else")
    system.catch_up()
    assert not any(app.video(v).is_live for v in [*videos, remix]) and not system.reads.feed_ids()
    with pytest.raises(RuleViolation):
        app.reinstate(videos[1], app.video(videos[1]).open_cases()[0].case_id, tess, "it is hers")
    system.close()


def test_a_repeated_registration_leaves_a_cameo_in_use_as_it_is(tmp_path: Path) -> None:
    system = System(Settings(home=tmp_path / "home", event_store="sqlite"))
    app = system.app
    alice, mallory, bob, tess = (app.register_person(h) for h in ("alice", "mallory", "bob", "tess"))
    app.change_role(OPERATOR, tess, "trust_and_safety", grant=True)
    alices = encode_png(synthesize_face(0, 256))
    real = app.register_cameo(alice, alices, command_id="register-once")
    assert system.verify_cameo(real) is None
    app.grant_consent(alice, real, "everyone")
    video = publish_new(app, bob, "with alice", cameo_ids=[real])
    twin = app.register_cameo(mallory, alices)
    assert system.verify_cameo(twin) is not None
    app.review_cameo(twin, tess, "cleared", "a twin: checked in person")

    assert app.register_cameo(alice, alices, command_id="register-once") == real  # a client's retry
    assert system.verify_cameo(real) is None
    assert app.cameo(real).is_active and app.video(video).is_live
    system.close()
