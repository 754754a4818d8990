"""A cameo made from someone else's face is held: it grants nothing and blocks none of the real owner's videos."""

from __future__ import annotations

from pathlib import Path

import pytest

from devkit.clip import synthesize_face
from kernel.errors import ConsentError, NotPermitted, RuleViolation
from provenance.application import ProvenanceApp
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
