"""An independent parser (`spec_parser`: the specification, `cbor2` and `cryptography`, nothing shared) agrees
with `provenance verify` on signed files and remixes."""

from __future__ import annotations

import itertools
from pathlib import Path
from uuid import uuid4

from cryptography import x509

from provenance.credentials.pki import DevelopmentPki
from provenance.credentials.signing import sign_video
from provenance.credentials.verify import verify_file
from provenance.credentials.watermark import ALG
from tests.credentials import spec_parser
from tests.credentials.conftest import Signed
from tests.credentials.support import flip_media_byte, manifest_inputs


def chains_to(chain: list[x509.Certificate], anchors: list[x509.Certificate]) -> bool:
    """Each certificate issued by the next, the last by an anchor (signatures and names, as RFC 5280 asks)."""
    try:
        for child, parent in itertools.pairwise(chain):
            child.verify_directly_issued_by(parent)
        return any(_issued_by(chain[-1], anchor) for anchor in anchors)
    except (ValueError, TypeError):
        return False


def _issued_by(child: x509.Certificate, anchor: x509.Certificate) -> bool:
    try:
        child.verify_directly_issued_by(anchor)
    except Exception:
        return False
    return True


def test_an_independent_parser_reads_what_verify_reports(tmp_path: Path, clip: Path, pki: DevelopmentPki) -> None:
    video_id, parent_id = uuid4(), uuid4()
    parent = sign_video(clip, tmp_path / "parent.mp4", manifest_inputs(parent_id), pki.identity()).path
    remix = sign_video(
        clip, tmp_path / "remix.mp4", manifest_inputs(video_id, remix_of=parent_id), pki.identity(), parent
    )
    anchors = x509.load_pem_x509_certificates(pki.anchors_file.read_bytes())

    for path, expected_video in ((parent, parent_id), (remix.path, video_id)):
        report = verify_file(path, pki.trust())
        active, manifests = spec_parser.manifests(path)
        manifest = manifests[active]
        assert active == report.manifest_id
        assert manifest.signature_verifies() and manifest.assertion_hashes_match()
        assert spec_parser.bmff_hash_matches(path, manifest.assertion("c2pa.hash.bmff.v3"))
        chain = manifest.certificates()
        assert chains_to(chain, anchors) == (report.state == "Trusted") is True
        assert report.certificate is not None
        assert f"{chain[0].serial_number:x}" == report.certificate["serial_number"].lower().lstrip("0")
        assert manifest.assertion("org.provenance.log")["video_id"] == str(expected_video) == report.claimed_video_id
        binding = manifest.assertion("c2pa.soft-binding")
        assert binding["alg"] == ALG and {"alg": binding["alg"], "value": binding["blocks"][0]["value"]} == (
            report.soft_binding
        )
        actions = [a["action"] for a in manifest.assertion("c2pa.actions.v2")["actions"]]
        assert actions == [a["action"] for a in report.actions] and actions[-1] == "c2pa.watermarked.bound"

    # The remix carries its parent's manifest: the parser checks that signature too, and finds the same chain.
    active, manifests = spec_parser.manifests(remix.path)
    [parent_label] = [label for label in manifests if label != active]
    assert manifests[parent_label].signature_verifies()
    assert verify_file(remix.path, pki.trust()).ingredients[0].manifest_id == parent_label


def test_both_find_a_changed_media_byte(tmp_path: Path, signed: Signed, pki: DevelopmentPki) -> None:
    tampered = tmp_path / "tampered.mp4"
    tampered.write_bytes(flip_media_byte(signed.path.read_bytes()))
    active, manifests = spec_parser.manifests(tampered)
    manifest = manifests[active]
    assert manifest.signature_verifies()  # the claim is untouched ...
    assert not spec_parser.bmff_hash_matches(tampered, manifest.assertion("c2pa.hash.bmff.v3"))  # ... the media not
    report = verify_file(tampered, pki.trust())
    assert report.state == "Invalid" and "assertion.bmffHash.mismatch" in report.failures


def test_c2patool_agrees_when_it_is_installed(tmp_path: Path, signed: Signed, pki: DevelopmentPki) -> None:
    import json
    import shutil
    import subprocess

    import pytest

    tool = shutil.which("c2patool")
    if tool is None:
        pytest.skip("c2patool is not on PATH (cargo install c2patool to run this comparison)")
    settings = tmp_path / "settings.json"
    anchors = [{"trust_anchors": pki.anchors_file.read_text(), "trust_kind": "manifest"}]
    settings.write_text(json.dumps({"trust": {"anchors": anchors}, "verify": {"remote_manifest_fetch": False}}))
    done = subprocess.run([tool, "--settings", str(settings), str(signed.path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["validation_state"] == verify_file(signed.path, pki.trust()).state


def test_a_file_signed_by_another_root_does_not_chain_to_ours(
    tmp_path: Path, clip: Path, pki: DevelopmentPki, other_pki: DevelopmentPki
) -> None:
    path = sign_video(clip, tmp_path / "other.mp4", manifest_inputs(uuid4()), other_pki.identity()).path
    active, manifests = spec_parser.manifests(path)
    assert manifests[active].signature_verifies()  # well signed ...
    ours = x509.load_pem_x509_certificates(pki.anchors_file.read_bytes())
    assert not chains_to(manifests[active].certificates(), ours)  # ... by someone we do not trust
    assert verify_file(path, pki.trust()).state == "Valid"
