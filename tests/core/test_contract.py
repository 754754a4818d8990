"""Contract tests of the write side, written once and run against every event store."""

from __future__ import annotations

import pytest

from kernel.errors import ConsentError
from provenance.domain.video import PUBLISHED
from tests.core.support import AppFactory, face, pass_gates, publish_new


def test_a_video_passes_every_gate_and_reads_back_after_reopening(backend_factory: AppFactory) -> None:
    app = backend_factory()
    alice = app.register_person("alice")
    bob = app.register_person("bob")
    cameo = app.register_cameo(alice, face())
    grant = app.grant_consent(alice, cameo, "approved", grantees=[bob])
    video_id = publish_new(app, bob, "two balls", cameo_ids=[cameo])

    reopened = backend_factory()
    video = reopened.video(video_id)
    assert video.state == PUBLISHED
    assert [c.model_dump() for c in video.cameos] == [{"cameo_id": str(cameo), "grant_id": grant}]
    assert reopened.cameo(cameo).uses[0].video_id == str(video_id)
    assert reopened.cameo_reference(cameo) == face()


def test_the_same_command_twice_records_nothing_the_second_time(backend_factory: AppFactory) -> None:
    app = backend_factory()
    alice = app.register_person("alice", command_id="person-1")
    assert app.register_person("alice", command_id="person-1") == alice
    first = app.request_generation(alice, "a ball", command_id="req-1")
    recorded = len(app.recorder.select_notifications(start=0, limit=1000))
    assert app.request_generation(alice, "a ball", command_id="req-1") == first
    pass_gates(app, first)
    after_gates = app.recorder.select_notifications(start=0, limit=1000)
    pass_gates(app, first)  # a redelivered worker result
    assert app.recorder.select_notifications(start=0, limit=1000) == after_gates
    assert len(after_gates) == recorded + 3


def test_revocation_takes_down_the_tree_in_one_transaction(backend_factory: AppFactory) -> None:
    app = backend_factory()
    alice, bob, carol = (app.register_person(h) for h in ("alice", "bob", "carol"))
    cameo = app.register_cameo(alice, face())
    grant = app.grant_consent(alice, cameo, "approved", grantees=[bob])
    app.grant_consent(alice, cameo, "everyone", scope=["remix"])
    root = publish_new(app, bob, cameo_ids=[cameo])
    child = publish_new(app, carol, "remix", remix_of=root)
    grandchild = publish_new(app, alice, "remix of remix", remix_of=child)

    outcome = app.revoke_consent(alice, cameo, grant, "I no longer consent")

    assert {(t.video_id, t.source) for t in outcome.takedowns} == {
        (str(root), "consent_revocation"),
        (str(child), "cascade"),
        (str(grandchild), "cascade"),
    }
    reopened = backend_factory()
    revocation_event = reopened.cameo(cameo).grants[grant].revocation_event_id
    root_case = next(iter(reopened.video(root).cases.values()))
    child_case = next(iter(reopened.video(child).cases.values()))
    assert root_case.caused_by == {"event_id": revocation_event, "stream_id": str(cameo)}
    assert child_case.caused_by == {"event_id": root_case.event_id, "stream_id": str(root)}
    assert not any(reopened.video(v).is_live for v in (root, child, grandchild))
    with pytest.raises(ConsentError, match="revoked"):
        reopened.request_generation(bob, "again", cameo_ids=[cameo])


def test_stored_topics_are_pinned_to_stream_types(backend_factory: AppFactory) -> None:
    app = backend_factory()
    alice = app.register_person("alice")
    app.request_generation(alice, "a ball")
    topics = {n.topic for n in app.recorder.select_notifications(start=1, limit=10)}
    assert topics == {"provenance:person.Started", "provenance:video.Started"}
