"""A signer's life: rotated without breaking the files signed before, distrusted when its key is compromised."""

from __future__ import annotations

from pathlib import Path
from uuid import uuid4

from provenance.credentials.pki import (
    CHAIN_FILE,
    RETIRED_DIR,
    TrustConfig,
    create_development_pki,
    distrust_signer,
    rotate_development_pki,
)
from provenance.credentials.signing import sign_video
from provenance.credentials.verify import SIGNER_DISTRUSTED, verify_file
from tests.credentials.support import manifest_inputs


def test_rotation_keeps_earlier_files_trusted_and_distrust_reports_every_file_of_the_old_signer(
    tmp_path: Path, clip: Path
) -> None:
    pki = create_development_pki(tmp_path / "pki")
    before = tmp_path / "before.mp4"
    sign_video(clip, before, manifest_inputs(uuid4()), pki.identity())

    rotated = rotate_development_pki(pki.directory)
    assert rotated.certificate_fingerprint != pki.certificate_fingerprint
    after = tmp_path / "after.mp4"
    sign_video(clip, after, manifest_inputs(uuid4()), rotated.identity())
    remix = tmp_path / "remix.mp4"
    sign_video(clip, remix, manifest_inputs(uuid4(), remix_of=uuid4()), rotated.identity(), before)

    trust = TrustConfig.from_directory(pki.directory)
    old, new = verify_file(before, trust), verify_file(after, trust)
    assert (old.state, new.state) == ("Trusted", "Trusted")  # the old root is still an anchor
    assert old.certificate and new.certificate and old.certificate["serial_number"] != new.certificate["serial_number"]
    assert verify_file(remix, trust).chain_state == "Trusted"

    [retired] = (pki.directory / RETIRED_DIR).iterdir()
    entry = distrust_signer(pki.directory, retired / CHAIN_FILE, "its key was found on a public server")
    assert entry.fingerprint == pki.certificate_fingerprint
    old = verify_file(before, trust)
    assert old.state == "Invalid" and SIGNER_DISTRUSTED in old.failures
    assert "found on a public server" in old.reason and old.video_id is None
    assert verify_file(after, trust).state == "Trusted"
    chained = verify_file(remix, trust)  # signed by the new signer, over a parent the old one signed
    assert chained.state == "Trusted" and chained.chain_state == "Invalid"
    assert SIGNER_DISTRUSTED in chained.ingredients[0].failures


def test_the_platform_lists_the_videos_a_distrusted_signer_signed(tmp_path: Path) -> None:
    from provenance.bootstrap import System
    from provenance.config import Settings
    from tests.core.support import publish_new, signature

    system = System(Settings(home=tmp_path / "home", event_store="memory"))
    person = system.app.register_person("alice")
    videos = [publish_new(system.app, person, f"clip {n}") for n in range(3)]
    system.catch_up()
    fingerprint = signature(videos[0]).certificate_fingerprint
    assert system.reads.videos_signed_by(fingerprint) == [str(v) for v in videos]
    assert system.reads.videos_signed_by("00" * 32) == []
    system.close()
