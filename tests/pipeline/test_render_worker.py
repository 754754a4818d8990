"""The render worker: exactly one VideoRendered per request, whatever is redelivered or fails."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kernel.errors import ConsentError
from provenance.bootstrap import System
from provenance.config import Settings
from provenance.gates import GateWorkers, RenderJob
from provenance.log import read_log
from provenance.runner import LOG_SOURCE
from provenance.stages import GeneratorStage
from tests.core.support import face

SMALL = {"duration_s": 1.0, "fps": 12, "width": 144, "height": 256}


@pytest.fixture
def system(tmp_path: Path) -> Iterator[System]:
    system = System(Settings(home=tmp_path / "home", event_store="sqlite"))
    yield system
    system.close()


def rendered_events(system: System) -> list[Any]:
    return [e for e in read_log(system.app, 0, 10_000) if e.event_type in ("VideoRendered", "RenderFailed")]


def test_a_redelivered_request_renders_once(system: System) -> None:
    creator = system.app.register_person("alice")
    video_id = system.app.request_generation(creator, "two blue balls", parameters=SMALL)
    workers = GateWorkers(system.app, render=GeneratorStage(system.app.blobs))
    system.pipeline(workers).run_until_idle()
    request = next(e for e in read_log(system.app, 0, 100) if e.event_type == "GenerationRequested")
    workers.handlers()["render"](request)  # the same event delivered again, e.g. after a crash
    [event] = rendered_events(system)
    assert event.event_type == "VideoRendered"
    path = system.app.blobs.resolve(event.payload["blob_uri"])
    assert path.stat().st_size == event.payload["size_bytes"]
    assert system.app.video(video_id).state == "rendered"


def test_a_crash_after_recording_before_the_checkpoint_records_nothing_twice(system: System) -> None:
    creator = system.app.register_person("alice")
    system.app.request_generation(creator, "a ball", parameters=SMALL)
    workers = GateWorkers(system.app, render=GeneratorStage(system.app.blobs))
    [consumer] = [c for c in workers.consumers(system.store.engine) if c.name == "worker:render"]
    batch = read_log(system.app, 0, 100)
    for event in batch:  # the worker did its work but died before writing its checkpoint
        consumer.handle_one(event)
    assert consumer.checkpoint(LOG_SOURCE, 0) is None
    system.pipeline(workers).run_until_idle()  # restarted: redelivers from the start
    assert len(rendered_events(system)) == 1


class FailingStage:
    def render(self, job: RenderJob) -> dict[str, Any]:
        from generator import RenderError

        raise RenderError("the encoder ran out of disk space")


def test_a_failing_render_is_recorded_with_its_reason(system: System) -> None:
    creator = system.app.register_person("alice")
    video_id = system.app.request_generation(creator, "a ball", parameters=SMALL)
    system.pipeline(GateWorkers(system.app, render=FailingStage())).run_until_idle()
    [event] = rendered_events(system)
    assert event.event_type == "RenderFailed"
    assert "disk space" in event.payload["reason"]
    assert system.app.video(video_id).state == "render_failed"
    assert not list((system.settings.blob_root).rglob("*.mp4"))


def test_missing_consent_is_refused_before_any_rendering(system: System) -> None:
    alice = system.app.register_person("alice")
    bob = system.app.register_person("bob")
    cameo = system.app.register_cameo(alice, face())
    with pytest.raises(ConsentError):
        system.app.request_generation(bob, "bob with alice", cameo_ids=[cameo], parameters=SMALL)
    system.pipeline(GateWorkers(system.app, render=GeneratorStage(system.app.blobs))).run_until_idle()
    assert rendered_events(system) == []
