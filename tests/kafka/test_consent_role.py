"""The consent watch as a role of the distributed mode: an unfollow on the topic takes the videos down."""

from __future__ import annotations

from provenance.bootstrap import System
from provenance.config import Settings
from provenance.kafka.relay import RelayOptions
from provenance.kafka.roles import run_consent_watch, run_relay
from provenance.runner import EmbeddedRunner, ProjectionConsumer
from tests.core.support import face, publish_new
from tests.kafka.support import running, wait_for


def test_an_unfollow_on_the_topic_takes_down_what_the_mutual_grant_covered(settings: Settings) -> None:
    system = System(settings)
    app = system.app
    alice, bob = app.register_person("alice"), app.register_person("bob")
    app.follow(alice, bob)
    app.follow(bob, alice)
    cameo = app.register_cameo(alice, face())
    app.grant_consent(alice, cameo, "mutuals")
    video = publish_new(app, bob, cameo_ids=[cameo])
    EmbeddedRunner(app, [ProjectionConsumer(system.store)]).run_once()  # stands for the projections service
    app.unfollow(bob, alice)

    with (
        running(lambda stop: run_relay(System(settings), stop, RelayOptions(partitions=3)), "relay"),
        running(lambda stop: run_consent_watch(System(settings), stop, sweep_every_s=0.5), "consent") as watch,
    ):
        wait_for(lambda: watch.check() or not app.video(video).is_live, "the takedown")
    [case] = app.video(video).open_cases()
    assert "no longer mutuals" in case.statement_of_reasons and case.caused_by is not None
    system.close()
