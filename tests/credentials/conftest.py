"""Session fixtures: one development PKI, one clip, and the signed files most tests read (signing costs)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from uuid import UUID, uuid4

import pytest

from devkit.sample_video import SampleClip, write_sample_video
from provenance.credentials.pki import DevelopmentPki, create_development_pki
from provenance.credentials.signing import SignedVideo, sign_video
from tests.credentials.support import flip_media_byte, manifest_inputs


@dataclass(frozen=True)
class Signed:
    video_id: UUID
    result: SignedVideo

    @property
    def path(self) -> Path:
        return self.result.path


@pytest.fixture(scope="session")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("credentials")


@pytest.fixture(scope="session")
def pki(workdir: Path) -> DevelopmentPki:
    return create_development_pki(workdir / "pki")


@pytest.fixture(scope="session")
def other_pki(workdir: Path) -> DevelopmentPki:
    """A second, unrelated development root: its signatures must not be trusted by `pki`'s anchors."""
    return create_development_pki(workdir / "other-pki", organisation="Elsewhere")


@pytest.fixture(scope="session")
def clip(workdir: Path) -> Path:
    return write_sample_video(workdir / "rendered.mp4", SampleClip(width=160, height=288, seconds=1.5, seed=3))


@pytest.fixture(scope="session")
def second_clip(workdir: Path) -> Path:
    return write_sample_video(workdir / "rendered-2.mp4", SampleClip(width=160, height=288, seconds=1.5, seed=11))


@pytest.fixture(scope="session")
def signed(workdir: Path, clip: Path, pki: DevelopmentPki) -> Signed:
    video_id = uuid4()
    return Signed(
        video_id, sign_video(clip, workdir / "signed" / "parent.mp4", manifest_inputs(video_id), pki.identity())
    )


@pytest.fixture(scope="session")
def remix(workdir: Path, second_clip: Path, pki: DevelopmentPki, signed: Signed) -> Signed:
    video_id = uuid4()
    inputs = manifest_inputs(video_id, remix_of=signed.video_id)
    result = sign_video(second_clip, workdir / "signed" / "remix.mp4", inputs, pki.identity(), signed.path)
    return Signed(video_id, result)


@pytest.fixture(scope="session")
def remix_of_tampered_parent(workdir: Path, second_clip: Path, pki: DevelopmentPki, signed: Signed) -> Signed:
    tampered_parent = workdir / "signed" / "parent-tampered.mp4"
    tampered_parent.write_bytes(flip_media_byte(signed.path.read_bytes()))
    video_id = uuid4()
    inputs = manifest_inputs(video_id, remix_of=signed.video_id)
    result = sign_video(
        second_clip, workdir / "signed" / "remix-bad-parent.mp4", inputs, pki.identity(), tampered_parent
    )
    return Signed(video_id, result)
