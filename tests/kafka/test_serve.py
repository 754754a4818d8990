"""`provenance serve` stops the process when a role dies or gets stuck, so that its supervisor starts a fresh
one; a stuck role stops beating before that. The roles here stand in for the Kafka loops (no broker needed):
what is under test is how `serve` watches them."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kernel.errors import StageFailed
from provenance.bootstrap import System
from provenance.config import Settings
from provenance.kafka import roles
from provenance.kafka.consumers import ConsumerOptions, TopicFollower
from provenance.kafka.health import STALLED_CONNECT_S, Progress, heartbeat_path
from provenance.kafka.positions import Positions, open_engine
from provenance.kafka.relay import Relay, RelayOptions
from provenance.kafka.sinks import HandlerSink
from provenance.serve import serve


@pytest.fixture
def system(tmp_path: Path) -> Iterator[System]:
    built = System(Settings(home=tmp_path, kafka_bootstrap="127.0.0.1:9"))  # never dialled here
    yield built
    built.close()


def test_a_role_stuck_inside_a_round_stops_beating_and_stops_the_process(
    system: System, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As kafka-python spinning inside `poll`: the thread is alive, the loop never comes round again."""
    beat = heartbeat_path(system.settings.home, "relay")
    beats_seen: list[bool] = []
    stopped_cleanly = threading.Event()
    released = threading.Event()  # by the test at its end, not by `serve`

    def stuck_relay(_: System, stop: threading.Event, progress: Progress) -> None:
        progress.next_round_within(0.5)
        while not released.is_set():  # never looks at `stop` again
            beats_seen.append(beat.exists())
            time.sleep(0.05)

    def projections(_: System, stop: threading.Event, progress: Progress) -> None:
        while not stop.is_set():
            progress.next_round_within(0.5)
            stop.wait(0.05)
        stopped_cleanly.set()

    monkeypatch.setattr(roles, "run_relay", stuck_relay)
    monkeypatch.setattr(roles, "run_projection_consumer", projections)
    raised: list[BaseException] = []

    def serving() -> None:
        try:
            serve(system, ["relay", "projections"])
        except BaseException as exc:
            raised.append(exc)

    server = threading.Thread(target=serving, daemon=True)
    server.start()
    server.join(timeout=15)
    try:
        assert not server.is_alive(), "serve went on with a stuck role"
    finally:
        released.set()
    assert len(raised) == 1 and isinstance(raised[0], StageFailed) and "relay stuck" in str(raised[0])
    assert stopped_cleanly.is_set()  # the healthy role was stopped and left cleanly
    assert True in beats_seen and not beat.exists()  # it beat while its round was young, then no more
    assert not heartbeat_path(system.settings.home, "projections").exists()


def test_roles_that_keep_coming_round_are_served_until_stopped(system: System, monkeypatch: pytest.MonkeyPatch) -> None:
    """A round that takes longer than the beat (a render in the generator) is fine while within its allowance."""
    stop = threading.Event()
    rounds: list[int] = []

    def relay(_: System, stop: threading.Event, progress: Progress) -> None:
        while not stop.is_set():
            progress.next_round_within(2.0)
            rounds.append(1)
            stop.wait(1.2)  # each round longer than the heartbeat's second

    monkeypatch.setattr(roles, "run_relay", relay)
    timer = threading.Timer(3.0, stop.set)
    timer.start()
    assert serve(system, ["relay"], stop) == 0
    assert len(rounds) >= 2


def test_a_clean_up_longer_than_the_last_round_is_a_shutdown_not_a_stuck_role(
    system: System, monkeypatch: pytest.MonkeyPatch
) -> None:
    stop = threading.Event()

    def relay(_: System, stop: threading.Event, progress: Progress) -> None:
        while not stop.is_set():
            progress.next_round_within(0.3)
            stop.wait(0.05)
        time.sleep(1.0)  # the last acknowledgements, after the round's allowance has passed

    monkeypatch.setattr(roles, "run_relay", relay)
    threading.Timer(0.5, stop.set).start()
    assert serve(system, ["relay"], stop) == 0


def test_a_follower_gives_each_round_what_kafka_allows_between_polls_and_a_database_stall(tmp_path: Path) -> None:
    sink = HandlerSink("watch", Positions(open_engine(f"sqlite:///{tmp_path / 'p.db'}")), lambda _: None)
    options = ConsumerOptions(group_id="watch", max_poll_interval_ms=60_000)
    before, deadline = first_round(TopicFollower("127.0.0.1:9", "events", sink, options), "poll_once")
    # As long as Kafka allows between polls, and more: a backoff and a stalled database connection fit in too.
    allowance = 60 + options.backoff_max_s + STALLED_CONNECT_S
    assert before + allowance - 1 < deadline <= time.monotonic() + allowance


def test_the_relay_gives_each_round_its_sends_and_their_delivery(system: System, tmp_path: Path) -> None:
    options = RelayOptions()
    relay = Relay(system.app, Positions(open_engine(f"sqlite:///{tmp_path / 'p.db'}")), "127.0.0.1:9", "t", options)
    before, deadline = first_round(relay, "relay_batch")
    sends_and_delivery_s = (options.max_block_ms + 2 * options.delivery_timeout_ms) / 1000 + options.flush_grace_s
    assert deadline > before + sends_and_delivery_s + STALLED_CONNECT_S


def first_round(loop: Any, work: str) -> tuple[float, float]:
    """Run `loop.run` for one round, its `work` method replaced by nothing: when it started, and the deadline
    its progress had for that round."""
    stop = threading.Event()
    progress = Progress()
    deadlines: list[float] = []

    def nothing(*_: Any) -> int:
        deadlines.append(progress.deadline or 0.0)
        stop.set()
        return 0

    setattr(loop, work, nothing)
    before = time.monotonic()
    loop.run(stop, progress)
    assert len(deadlines) == 1 and not progress.overdue()
    return before, deadlines[0]
