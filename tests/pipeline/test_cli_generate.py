"""`provenance generate` takes a video the whole way, and `review` lets a person finish what a classifier held.

Real renderer, development models and real C2PA signing, on small clips.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from provenance.bootstrap import System
from provenance.config import Settings
from tests.core.support import moderation
from tests.pipeline.test_cli_and_demo import run

SMALL = ("--duration", "1", "--fps", "8", "--size", "144x256")


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Path:
    monkeypatch.setenv("PROVENANCE_HOME", str(tmp_path / "home"))
    assert run(capsys, "person", "alice")[0] == 0
    assert run(capsys, "person", "tess", "--trust-and-safety")[0] == 0
    return tmp_path / "home"


def recorded(home: Path) -> int:
    system = System(Settings(home=home))
    try:
        return system.app.recorder.max_notification_id() or 0
    finally:
        system.close()


def test_generate_without_a_signing_identity_records_nothing(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = recorded(home)
    code, out, err = run(capsys, "generate", "--prompt", "a red ball", *SMALL, "--as", "alice")
    assert (code, out) == (2, "") and "provenance pki init" in err
    assert recorded(home) == before


def test_generate_publishes_a_signed_file_that_verifies(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "pki", "init")[0] == 0
    code, out, err = run(capsys, "generate", "--prompt", "a red ball", *SMALL, "--as", "alice")
    assert code == 0, err
    signed = Path(out)
    assert signed.is_file() and signed.parent == home / "videos"
    video_id = signed.stem
    code, out, _ = run(capsys, "verify", str(signed))
    assert code == 0 and "Trusted" in out
    assert video_id in run(capsys, "feed")[1]


def test_a_video_held_for_review_is_released_or_blocked_by_trust_and_safety(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(capsys, "pki", "init")[0] == 0
    system = System(Settings(home=home))
    alice = system.app.person_by_handle("alice").id
    held = []
    for prompt in ("a blue ball", "a green ball"):
        video = system.app.request_generation(
            alice, prompt, parameters={"duration_s": 1, "fps": 8, "width": 144, "height": 256}
        )
        system.drive(video, system.gate_workers(render=True))
        system.app.record_moderation(video, moderation("review"), command_id=f"moderate:{video}")
        held.append(str(video))
    system.close()

    code, out, _ = run(capsys, "review", "list")
    assert code == 0 and all(video in out for video in held)
    code, _, err = run(capsys, "review", "decide", held[0], "allow", "--statement", "fine", "--as", "alice")
    assert code == 4 and "only trust and safety" in err
    code, out, err = run(capsys, "review", "decide", held[0], "allow", "--statement", "satire, allowed", "--as", "tess")
    assert code == 0, err
    assert Path(out).is_file()
    code, _, err = run(capsys, "review", "decide", held[1], "block", "--statement", "too gory", "--as", "tess")
    assert code == 4 and "blocked" in err
    assert run(capsys, "review", "list")[1] == "no video is held for review"
    code, out, _ = run(capsys, "audit", held[1])
    assert "reviewed by tess: too gory" in out  # the statement of reasons is on record
    system = System(Settings(home=home))
    decision = system.app.video(held[1]).moderation
    assert decision is not None and decision.reasons == ["reviewed by tess: too gory"]
    system.close()


@pytest.mark.slow
def test_several_generate_commands_at_once_on_one_home_all_succeed(home: Path) -> None:
    subprocess.run([sys.executable, "-m", "provenance.cli", "pki", "init"], check=True, capture_output=True)
    env = {**os.environ, "PROVENANCE_HOME": str(home), "OMP_NUM_THREADS": "1"}
    runs = [
        subprocess.Popen(
            [sys.executable, "-m", "provenance.cli", "generate", "--prompt", f"ball {n}", *SMALL, "--as", "alice"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(3)
    ]
    results = [(p.wait(timeout=600), *p.communicate()) for p in runs]
    for code, out, err in results:
        assert code == 0, err
        assert Path(out.strip()).is_file()


def test_a_trusted_file_whose_watermark_is_another_videos_does_not_verify(
    home: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Only the platform's own signer can make such a file (a key misused, a signing bug), and a platform must not
    take it as verified: the manifest names one video, the pictures are another's."""
    from uuid import UUID

    from provenance.credentials.pki import SigningIdentity
    from provenance.credentials.signing import sign_watermarked_video
    from tests.credentials.support import manifest_inputs, reencode

    assert run(capsys, "pki", "init")[0] == 0
    named, pictured = (Path(run(capsys, "generate", "--prompt", p, *SMALL, "--as", "alice")[1]) for p in "ab")
    marked = reencode(pictured, tmp_path / "marked.mp4", crf=18)  # its frames keep the watermark
    forged = tmp_path / "forged.mp4"
    identity = SigningIdentity.from_directory(home / "pki")
    sign_watermarked_video(marked, forged, manifest_inputs(UUID(named.stem)), identity)

    code, out, _ = run(capsys, "verify", str(forged))
    assert code == 1 and "Trusted" in out and "CONFLICT" in out and pictured.stem in out


def test_a_full_disk_while_signing_leaves_the_video_to_be_resumed_with_its_command_id(
    home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write of the signed file that meets a full disk is no verdict on the video: exit 6, one line that
    says so and how to resume, and the same command with that command id finishes it once there is space."""
    import re

    from provenance.stages import CredentialsStage
    from tests.pipeline.test_gates import FullDiskStore

    assert run(capsys, "pki", "init")[0] == 0
    real_sign = CredentialsStage.sign

    def sign_on_a_full_disk(self: CredentialsStage, job: object) -> object:
        store, self.store = self.store, FullDiskStore(self.store.root)
        try:
            return real_sign(self, job)  # type: ignore[arg-type]
        finally:
            self.store = store

    monkeypatch.setattr(CredentialsStage, "sign", sign_on_a_full_disk)
    request = ("generate", "--prompt", "a red ball", *SMALL, "--as", "alice")
    code, out, err = run(capsys, *request)
    assert (code, out) == (6, ""), err
    line = err.splitlines()[-1]
    assert line.startswith("provenance: error: ") and f"no space left on device: {home / 'blobs'}" in line
    assert "WARNING" not in err and "blocking" not in err
    found = re.search(r"--command-id (\S+)", line)
    assert found is not None, line
    video_id = err.split("requested ", 1)[1].split(";", 1)[0]
    assert video_id in line
    system = System(Settings(home=home))
    try:
        video = system.app.video(video_id)
        assert (video.state, video.block_reasons) == ("moderated", [])
    finally:
        system.close()

    monkeypatch.setattr(CredentialsStage, "sign", real_sign)  # space freed
    code, out, err = run(capsys, *request, "--command-id", found.group(1).rstrip(".,;:"))
    assert code == 0, err
    assert Path(out).stem == video_id


@pytest.mark.parametrize("garbled", ["signer-key.pem", "trust-anchors.pem"])
def test_a_garbled_signing_identity_is_refused_before_anything_is_recorded(
    home: Path, capsys: pytest.CaptureFixture[str], garbled: str
) -> None:
    assert run(capsys, "pki", "init")[0] == 0
    (home / "pki" / garbled).write_bytes(b"\xe7" + os.urandom(499))
    before = recorded(home)
    code, out, err = run(capsys, "generate", "--prompt", "a red ball", *SMALL, "--as", "alice")
    assert (code, out) == (2, ""), err
    assert garbled in err and len(err.splitlines()) == 1
    assert recorded(home) == before
