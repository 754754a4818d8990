"""The consent watch as a role of the distributed mode: an unfollow on the topic takes the videos down."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from provenance.bootstrap import System
from provenance.config import Settings
from provenance.consent_watch import NAME as CONSENT_WATCH
from provenance.kafka.positions import Positions
from provenance.kafka.relay import RelayOptions
from provenance.kafka.roles import run_consent_watch, run_relay, run_worker_consumer
from provenance.kafka.sinks import HandlerSink, Message, ProjectionSink
from provenance.log import read_log
from provenance.runner import EmbeddedRunner, ProjectionConsumer
from tests.core.support import face, mutuals_with_a_video, publish_new
from tests.kafka.support import running, wait_for


def test_an_unfollow_on_the_topic_takes_down_what_the_mutual_grant_covered(settings: Settings) -> None:
    system = System(settings)
    app = system.app
    alice, bob, _, video = mutuals_with_a_video(app)
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


def test_the_consent_role_and_the_consent_projection_keep_positions_of_their_own(tmp_path: Path) -> None:
    """Both follow the topic and store their positions in one table: under one name, the quicker one made the
    other skip what it had not read (the consent read model stayed empty, so no expiry was ever swept)."""
    system = System(Settings(home=tmp_path / "home", event_store="sqlite"))
    app = system.app
    alice, bob = app.register_person("alice"), app.register_person("bob")
    cameo = app.register_cameo(alice, face())
    grant = app.grant_consent(alice, cameo, "everyone", expires_at=datetime.now(UTC) + timedelta(hours=1))
    publish_new(app, bob, cameo_ids=[cameo])
    messages = [Message(n, e.to_json()) for n, e in enumerate(read_log(app, 0, 1000))]
    watch = system.consent_watch
    HandlerSink(CONSENT_WATCH, Positions(system.store.engine), watch.handle_one).apply({0: messages}, "kafka:t")
    ProjectionSink(system.store).apply({0: messages}, "kafka:t")  # the projections role, after the consent role
    assert [g["grant_id"] for g in system.reads.grants(str(cameo))] == [grant]
    with pytest.raises(ValueError, match="projection"):
        run_worker_consumer(system, threading.Event(), "consent", watch.handle_one)
    system.close()


@pytest.mark.parametrize("parked_as", [CONSENT_WATCH, "consent"])  # its name in earlier versions too
def test_what_the_consent_role_parked_is_replayed_through_its_own_handler(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, parked_as: str
) -> None:
    from provenance.cli import main
    from provenance.kafka.dead_letters import DeadLetters

    home = tmp_path / "home"
    monkeypatch.setenv("PROVENANCE_HOME", str(home))
    system = System(Settings(home=home))
    app = system.app
    alice, bob, _, video = mutuals_with_a_video(app)
    system.catch_up()  # the read models the watch finds the pair's cameos in, as the projections role keeps them
    app.unfollow(bob, alice)
    (unfollowed,) = [e for e in read_log(app, 0, 1000) if e.event_type == "Unfollowed"]
    DeadLetters(system.store.engine).park(parked_as, "kafka:t", 0, 9, unfollowed.to_json(), "a store was down")
    system.close()

    assert main(["parked", "replay", "consent"]) == 0
    assert not System(Settings(home=home)).app.video(video).is_live


def test_a_parked_event_that_fails_again_exits_6_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from provenance.cli import main
    from provenance.kafka.dead_letters import DeadLetters

    home = tmp_path / "home"
    monkeypatch.setenv("PROVENANCE_HOME", str(home))
    system = System(Settings(home=home))
    DeadLetters(system.store.engine).park(CONSENT_WATCH, "kafka:t", 0, 9, b"{not an event", "unreadable")
    system.close()
    assert main(["parked", "replay", "consent"]) == 6
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "1 of 1 parked event(s) could not be replayed and stay parked" in err
