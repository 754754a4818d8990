"""A signer's life: rotated without breaking the files signed before, distrusted when its key is compromised."""

from __future__ import annotations

from pathlib import Path
from uuid import uuid4

import pytest

from kernel.blobstore import BlobStore
from provenance.credentials.errors import PkiError
from provenance.credentials.pki import (
    CHAIN_FILE,
    RETIRED_DIR,
    create_development_pki,
    distrust_signer,
    rotate_development_pki,
)
from provenance.credentials.signing import sign_video
from provenance.credentials.trust import DISTRUST_FILE, TrustConfig
from provenance.credentials.verify import SIGNER_DISTRUSTED, verify_file
from provenance.stages import CredentialsStage
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


def _pki_named(directory: Path, root_name: str, signer_name: str) -> Path:
    """A root -> intermediate -> signer chain with chosen common names, in the development PKI's file layout."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    from provenance.credentials.pki import KEY_FILE, _issue
    from provenance.credentials.trust import ANCHORS_FILE

    def name(cn: str) -> x509.Name:
        return x509.Name(
            [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Example"), x509.NameAttribute(NameOID.COMMON_NAME, cn)]
        )

    now = dt.datetime.now(dt.UTC)
    start, end = now - dt.timedelta(minutes=5), now + dt.timedelta(days=30)
    keys = [ec.generate_private_key(ec.SECP256R1()) for _ in range(3)]
    root = _issue(name(root_name), keys[0], name(root_name), keys[0], start, end, 1)
    intermediate = _issue(name(f"{root_name} Intermediate"), keys[1], root.subject, keys[0], start, end, 0)
    leaf = _issue(name(signer_name), keys[2], intermediate.subject, keys[1], start, end, None)
    directory.mkdir(parents=True)
    pem = serialization.Encoding.PEM
    (directory / CHAIN_FILE).write_bytes(leaf.public_bytes(pem) + intermediate.public_bytes(pem))
    (directory / ANCHORS_FILE).write_bytes(root.public_bytes(pem))
    (directory / KEY_FILE).write_bytes(
        keys[2].private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return directory


def test_the_development_flag_comes_from_the_anchor_that_validated_the_signer_not_from_its_name(
    tmp_path: Path, clip: Path
) -> None:
    from provenance.credentials.pki import SigningIdentity

    production = _pki_named(tmp_path / "production", "Example Root", "Example Signer DEVELOPMENT ONLY")
    development = create_development_pki(tmp_path / "development")
    impostor = tmp_path / "impostor.mp4"  # a production signer that calls itself a development one
    sign_video(clip, impostor, manifest_inputs(uuid4()), SigningIdentity.from_directory(production))
    honest = tmp_path / "honest.mp4"
    sign_video(clip, honest, manifest_inputs(uuid4()), development.identity())

    mixed = TrustConfig(anchor_files=(production / "trust-anchors.pem", development.anchors_file))
    assert verify_file(impostor, mixed).development_pki is False
    assert verify_file(honest, mixed).development_pki is True
    assert verify_file(impostor, TrustConfig.from_directory(production)).development_pki is False
    assert verify_file(impostor, development.trust()).development_pki is None  # not trusted: nobody vouches


def test_a_development_signature_stamped_by_a_production_authority_stays_development_after_it_expires(
    tmp_path: Path, clip: Path
) -> None:
    """The flag comes from re-reading the file against the development roots alone: that re-read must still
    accept the time-stamp, which the first read validated against every root, or the expired signer fails it."""
    import datetime as dt
    import time

    from devkit.timestamp_authority import TimestampAuthority, serving
    from provenance.credentials.pki import KEY_FILE, PkiValidity
    from provenance.credentials.trust import ANCHORS_FILE

    now = dt.datetime.now(dt.UTC)
    expires = now + dt.timedelta(seconds=6)
    validity = PkiValidity(leaf_not_before=now - dt.timedelta(minutes=5), leaf_not_after=expires)
    development = create_development_pki(tmp_path / "development", validity=validity)
    production = _pki_named(tmp_path / "production", "Example Root", "Example Time-Stamp Authority")
    authority = TimestampAuthority((production / CHAIN_FILE).read_bytes(), (production / KEY_FILE).read_bytes())
    stamped = tmp_path / "stamped.mp4"
    with serving(authority) as running:
        sign_video(clip, stamped, manifest_inputs(uuid4()), development.identity(tsa_url=running.url))
    mixed = TrustConfig(anchor_files=(production / ANCHORS_FILE, development.anchors_file))
    assert verify_file(stamped, mixed).development_pki is True
    time.sleep(max(0.0, (expires - dt.datetime.now(dt.UTC)).total_seconds()) + 1)

    report = verify_file(stamped, mixed)
    assert report.state == "Trusted" and "timeStamp.trusted" in report.success_codes
    assert report.development_pki is True


def test_a_distrusted_signer_does_not_sign_again_until_it_is_rotated(tmp_path: Path) -> None:
    pki = create_development_pki(tmp_path / "pki")
    distrust = pki.directory / DISTRUST_FILE
    store = BlobStore(tmp_path / "blobs")
    CredentialsStage(store, pki.directory, tmp_path / "work", distrust_file=distrust)  # a signer that can sign
    distrust_signer(pki.directory, pki.directory / CHAIN_FILE, "its key was found on a public server")
    with pytest.raises(PkiError, match="distrusted: run `provenance pki rotate`"):  # it signed files Invalid at once
        CredentialsStage(store, pki.directory, tmp_path / "work", distrust_file=distrust)
    rotate_development_pki(pki.directory)
    CredentialsStage(store, pki.directory, tmp_path / "work", distrust_file=distrust)
