"""The gate sequence: every video passes every gate or is blocked, and consent is checked at publish."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from kernel.blobstore import BlobRef, BlobStore, BlobWriteError
from kernel.errors import InvalidInput, ProvenanceError
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


@pytest.mark.parametrize("ending", ["erase", "revoke"])
def test_a_render_dropped_because_its_likeness_lost_consent_is_not_kept(system: System, ending: str) -> None:
    """Dropped because consent ended, the render shows a likeness that nothing records: no later erasure could
    find it."""
    import hashlib

    app = system.app
    alice, bob = app.register_person("alice"), app.register_person("bob")
    cameo = app.register_cameo(alice, face())
    grant = app.grant_consent(alice, cameo, "everyone")

    def end() -> object:
        if ending == "erase":
            return app.erase_cameo(alice, cameo, "forget my face")
        return app.revoke_consent(alice, cameo, grant, "not any more")

    video = app.request_generation(bob, "bob and alice", cameo_ids=[cameo])
    stages = Stages(during={"render": end})
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
    def __init__(self, failing: str, error: Callable[[str], Exception] | None = None) -> None:
        super().__init__()
        self.failing = failing
        self.error = error or (lambda stage: ProvenanceError(f"{stage} is broken"))
        self.fixed = False

    def _run(self, stage: str) -> None:
        super()._run(stage)
        if stage == self.failing and not self.fixed:
            raise self.error(stage)


@pytest.mark.parametrize(
    ("failing", "gate", "error"),
    [
        ("moderate", "moderation", None),
        ("sign", "signing", None),
        ("moderate", "moderation", lambda stage: InvalidInput(f"{stage} is broken: not a video it can decode")),
    ],
)
def test_a_failing_stage_blocks_the_video_with_its_reason(
    system: System, failing: str, gate: str, error: Callable[[str], Exception] | None
) -> None:
    alice = system.app.register_person("alice")
    video = system.app.request_generation(alice, "a ball")
    system.pipeline(workers(system, Broken(failing, error))).run_until_idle()
    state = system.app.video(video)
    assert state.state == "blocked"
    assert f"{failing} is broken" in state.block_reasons[0]
    system.catch_up()
    assert system.reads.video(str(video))["block_gate"] == gate


class FullDiskStore(BlobStore):
    """A blob store on a full disk: every write fails as a real one does (ENOSPC), until `full` is cleared."""

    full = True

    def _store(self, fill: Callable[[Any], tuple[str, int]]) -> BlobRef:
        def out_of_space(handle: Any) -> tuple[str, int]:
            fill(handle)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        return super()._store(out_of_space if self.full else fill)


class FullDisk(Stages):
    """The `failing` stage writes its output to a blob store on a full disk."""

    def __init__(self, failing: str, store: FullDiskStore) -> None:
        super().__init__()
        self.failing = failing
        self.store = store

    def _run(self, stage: str) -> None:
        super()._run(stage)
        if stage == self.failing:
            self.store.put_bytes(f"output of {stage}".encode())


@pytest.mark.parametrize(
    ("failing", "left_at"), [("render", "requested"), ("moderate", "rendered"), ("sign", "moderated")]
)
def test_a_full_disk_records_nothing_against_the_video_and_its_gate_runs_again_once_there_is_space(
    system: System, failing: str, left_at: str
) -> None:
    alice = system.app.register_person("alice")
    video = system.app.request_generation(alice, "a ball")
    store = FullDiskStore(system.app.blobs.root)
    stages = FullDisk(failing, store)
    gate = workers(system, stages)
    with pytest.raises(BlobWriteError, match=f"no space left on device: {system.app.blobs.root}"):
        system.pipeline(gate).run_until_idle()
    state = system.app.video(video)
    assert (state.state, state.block_reasons) == (left_at, [])
    types = [e.event_type for e in read_log(system.app, 0, 1000) if e.stream_id == str(video)]
    assert not {"VideoBlocked", "VideoRenderFailed"} & set(types)

    store.full = False  # space freed: the same gate runs again, from the same event
    system.pipeline(gate).run_until_idle()
    assert system.app.video(video).is_live
    assert stages.calls.count(failing) == 2


def _pki_error(stage: str) -> Exception:
    from provenance.credentials.errors import PkiError

    return PkiError("trust anchor file /srv/pki/trust-anchors.pem is not a PEM certificate bundle")


def _model_error(stage: str) -> Exception:
    from moderation.errors import ModelLoadError

    return ModelLoadError("the CLIP weights at /srv/clip.pt cannot be loaded")


def _time_stamp_error(stage: str) -> Exception:
    from provenance.credentials.errors import TimeStampUnavailable

    return TimeStampUnavailable("the time-stamp authority http://tsa.example did not answer in 5 tries")


def _database_error(stage: str) -> Exception:
    import sqlite3

    return sqlite3.OperationalError("database is locked")


@pytest.mark.parametrize(
    ("failing", "left_at", "error"),
    [
        ("sign", "moderated", _pki_error),
        ("sign", "moderated", _time_stamp_error),
        ("moderate", "rendered", _model_error),
        ("moderate", "rendered", _database_error),
        ("render", "requested", _model_error),
    ],
)
def test_a_failure_of_our_own_configuration_or_services_is_no_verdict_on_the_video(
    system: System, failing: str, left_at: str, error: Callable[[str], Exception]
) -> None:
    """A damaged signing identity, a model that does not load, an unreachable service: the video waits where
    it is, and its gate runs again once that is fixed."""
    alice = system.app.register_person("alice")
    video = system.app.request_generation(alice, "a ball")
    stages = Broken(failing, error)
    gate = workers(system, stages)
    with pytest.raises(type(error(failing))):
        system.pipeline(gate).run_until_idle()
    state = system.app.video(video)
    assert (state.state, state.block_reasons) == (left_at, [])
    stages.fixed = True
    system.pipeline(gate).run_until_idle()
    assert system.app.video(video).is_live


def test_a_rendered_file_missing_from_the_blob_store_is_no_verdict_on_the_video(system: System) -> None:
    alice = system.app.register_person("alice")
    video = system.app.request_generation(alice, "a ball")
    gate = workers(system, Stages())
    app = system.app
    for event in read_log(app, 0, 1000):
        if event.stream_id == str(video):
            gate.handlers()["render"](event)
    rendered_video = app.video(video)
    assert rendered_video.rendered is not None
    lost = app.blobs.resolve(rendered_video.rendered.blob_uri)
    kept = lost.read_bytes()
    lost.unlink()
    with pytest.raises(ProvenanceError, match="blob store"):
        system.pipeline(gate).run_until_idle()
    assert (app.video(video).state, app.video(video).block_reasons) == ("rendered", [])
    lost.write_bytes(kept)
    system.pipeline(gate).run_until_idle()
    assert app.video(video).is_live


@pytest.mark.parametrize(("lost_during", "left_at"), [(None, "requested"), ("render", "rendered")])
def test_a_lost_key_store_is_no_verdict_on_the_video(system: System, lost_during: str | None, left_at: str) -> None:
    """A key store moved away (or a wrong PROVENANCE_KEYS_URL) is not an erasure: nothing is recorded against
    the video, no empty key store is made in its place, and the gate runs again once it is back."""
    from kernel.errors import InfrastructureFailure
    from provenance.keystore import KeyStore

    app = system.app
    alice = app.register_person("alice")
    cameo = app.register_cameo(alice, face())
    video = app.request_generation(alice, "alice waves", cameo_ids=[cameo])
    assert isinstance(app.keystore, KeyStore)
    keys = Path(app.keystore.url.removeprefix("sqlite:///"))
    away = keys.with_name("keys.db.away")

    def lose() -> None:
        app.keystore.close()  # type: ignore[attr-defined]
        keys.rename(away)

    if lost_during is None:
        lose()
    stages = Stages(during={lost_during: lose} if lost_during else {})
    gate = workers(system, stages)
    recorded = len(list(read_log(app, 0, 1000)))
    with pytest.raises(InfrastructureFailure, match="does not hold key"):
        system.pipeline(gate).run_until_idle()
    state = app.video(video)
    assert (state.state, state.block_reasons) == (left_at, [])
    assert len(list(read_log(app, 0, 1000))) == recorded + (lost_during is not None)  # the render, if it ran
    assert not keys.exists()
    away.rename(keys)
    stages.during = {}
    system.pipeline(gate).run_until_idle()
    assert app.video(video).is_live


def test_only_an_io_error_on_a_nearly_full_disk_is_taken_for_no_space(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil
    import sqlite3
    from collections import namedtuple

    from provenance.kafka.errors import storage_failure

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda _: usage(10**9, 10**9 - 1000, 1000))
    io_error = sqlite3.OperationalError("disk I/O error")
    read_only = sqlite3.OperationalError("attempt to write a readonly database")
    assert storage_failure(io_error, tmp_path) == f"no space left on device: {tmp_path}"
    assert storage_failure(read_only, tmp_path) == f"a database file is read-only: {tmp_path}"  # not the space
