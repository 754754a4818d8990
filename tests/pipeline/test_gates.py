"""The gate sequence: every video passes every gate or is blocked, and consent is checked at publish."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from kernel.blobstore import BlobStore
from kernel.errors import ProvenanceError
from provenance.bootstrap import System
from provenance.config import Settings
from provenance.gates import GateWorkers, ModerationJob, RenderJob, SigningJob
from provenance.log import read_log
from tests.core.support import face, moderation, rendered, signature


@pytest.fixture
def system(tmp_path: Path) -> Iterator[System]:
    system = System(Settings(home=tmp_path / "home", event_store="sqlite"))
    yield system
    system.close()


class Stages:
    """Stand-ins for the model-backed stages, with a hook to act while a stage runs."""

    def __init__(self, verdict: str = "allow", during: dict[str, Callable[[], None]] | None = None) -> None:
        self.blobs: BlobStore | None = None
        self.verdict = verdict
        self.during = during or {}
        self.calls: list[str] = []

    def _run(self, stage: str) -> None:
        self.calls.append(stage)
        if stage in self.during:
            self.during[stage]()

    def render(self, job: RenderJob) -> dict[str, Any]:
        self._run("render")
        assert self.blobs is not None
        blob = self.blobs.put_bytes(f"not really a video: {job.video_id}".encode())
        return rendered(content_sha256=blob.sha256, blob_uri=blob.uri, size_bytes=blob.size)

    def moderate(self, job: ModerationJob) -> dict[str, Any]:
        self._run("moderate")
        return moderation(self.verdict)

    def sign(self, job: SigningJob) -> dict[str, Any]:
        self._run("sign")
        return signature(job.video_id)


def workers(system: System, stages: Stages) -> GateWorkers:
    stages.blobs = system.app.blobs
    return GateWorkers(system.app, render=stages, moderate=stages, sign=stages)


def test_a_video_goes_through_every_gate_once_even_when_events_are_redelivered(system: System) -> None:
    alice = system.app.register_person("alice")
    video = system.app.request_generation(alice, "a ball")
    stages = Stages()
    gate = workers(system, stages)
    system.pipeline(gate).run_until_idle()
    assert system.app.video(video).is_live
    for event in read_log(system.app, 0, 1000):  # everything delivered a second time
        for handler in gate.handlers().values():
            handler(event)
    assert stages.calls == ["render", "moderate", "sign"]
    types = [e.event_type for e in read_log(system.app, 0, 1000) if e.stream_id == str(video)]
    assert types == ["GenerationRequested", "VideoRendered", "ModerationDecided", "VideoSigned", "VideoPublished"]


@pytest.mark.parametrize("stage", ["render", "moderate", "sign"])
def test_consent_revoked_while_in_flight_is_never_published(system: System, stage: str) -> None:
    app = system.app
    alice, bob = app.register_person("alice"), app.register_person("bob")
    cameo = app.register_cameo(alice, face())
    grant = app.grant_consent(alice, cameo, "approved", grantees=[bob])
    video = app.request_generation(bob, "bob and alice", cameo_ids=[cameo])
    stages = Stages(during={stage: lambda: app.revoke_consent(alice, cameo, grant, "not any more")})
    system.pipeline(workers(system, stages)).run_until_idle()
    state = app.video(video)
    assert state.state == "blocked"
    assert "revoked" in " ".join(state.block_reasons)
    system.catch_up()
    assert str(video) not in system.reads.feed_ids()


def test_a_render_that_finishes_after_its_likeness_was_erased_is_not_kept(system: System) -> None:
    import hashlib

    app = system.app
    alice, bob = app.register_person("alice"), app.register_person("bob")
    cameo = app.register_cameo(alice, face())
    app.grant_consent(alice, cameo, "everyone")
    video = app.request_generation(bob, "bob and alice", cameo_ids=[cameo])
    stages = Stages(during={"render": lambda: app.erase_cameo(alice, cameo, "forget my face")})
    system.pipeline(workers(system, stages)).run_until_idle()
    assert app.video(video).state == "blocked" and app.video(video).rendered is None
    made = hashlib.sha256(f"not really a video: {video}".encode()).hexdigest()  # what the render stored
    assert not app.blobs.exists(made)


def test_a_block_verdict_stops_the_video_before_signing(system: System) -> None:
    alice = system.app.register_person("alice")
    video = system.app.request_generation(alice, "blood and gore")
    stages = Stages(verdict="block")
    system.pipeline(workers(system, stages)).run_until_idle()
    assert stages.calls == ["render", "moderate"]
    assert system.app.video(video).state == "blocked"


class Broken(Stages):
    def __init__(self, failing: str) -> None:
        super().__init__()
        self.failing = failing

    def _run(self, stage: str) -> None:
        super()._run(stage)
        if stage == self.failing:
            raise ProvenanceError(f"{stage} is broken")


@pytest.mark.parametrize(("failing", "gate"), [("moderate", "moderation"), ("sign", "signing")])
def test_a_failing_stage_blocks_the_video_with_its_reason(system: System, failing: str, gate: str) -> None:
    alice = system.app.register_person("alice")
    video = system.app.request_generation(alice, "a ball")
    system.pipeline(workers(system, Broken(failing))).run_until_idle()
    state = system.app.video(video)
    assert state.state == "blocked"
    assert f"{failing} is broken" in state.block_reasons[0]
    system.catch_up()
    assert system.reads.video(str(video))["block_gate"] == gate
