from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import socket
from pathlib import Path
from uuid import uuid4

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from kernel.blobstore import BlobStore
from provenance.credentials.errors import SigningError
from provenance.credentials.manifest import LOG_ASSERTION, TRAINED_ALGORITHMIC_MEDIA
from provenance.credentials.pki import DevelopmentPki, PkiValidity, SigningIdentity, create_development_pki
from provenance.credentials.signing import sign_video
from provenance.credentials.watermark import ALG, decode_watermark, payload_for, soft_binding_for
from schemas.events import VideoSigned
from tests.credentials.conftest import Signed
from tests.credentials.support import manifest_inputs

PAYLOAD_KEYS = set(VideoSigned.model_fields)
"""The payload is the event's schema, field for field (the manifest URI included)."""


def _store(path: Path, pki: DevelopmentPki) -> dict:
    import c2pa

    from provenance.credentials.c2pa_context import reading_context

    with reading_context(pki.trust()) as context, c2pa.Reader(str(path), context=context) as reader:
        return dict(json.loads(reader.json()))


def _assertions(manifest: dict) -> dict[str, dict]:
    return {a["label"]: a["data"] for a in manifest["assertions"] if "data" in a}


def test_signed_video_reads_back_trusted(signed: Signed, pki: DevelopmentPki) -> None:
    store = _store(signed.path, pki)
    assert store["validation_state"] == "Trusted"
    assert store["active_manifest"] == signed.result.manifest_id
    assert store["validation_results"]["activeManifest"]["failure"] == []


def test_payload_has_exactly_the_video_signed_keys(signed: Signed, pki: DevelopmentPki) -> None:
    payload = signed.result.to_payload().model_dump(mode="json")
    assert set(payload) == PAYLOAD_KEYS
    assert payload["manifest_sha256"] == hashlib.sha256(signed.result.manifest_store).hexdigest()
    assert payload["signed_sha256"] == hashlib.sha256(signed.path.read_bytes()).hexdigest()
    assert payload["signed_uri"] == payload["manifest_uri"] == ""  # no blob store was given
    leaf = x509.load_pem_x509_certificates(pki.chain_file.read_bytes())[0]
    assert (
        payload["certificate_fingerprint"] == hashlib.sha256(leaf.public_bytes(serialization.Encoding.DER)).hexdigest()
    )
    assert payload["signer"] == pki.signer and "DEVELOPMENT ONLY" in payload["signer"]
    alg, value = soft_binding_for(signed.video_id)
    assert payload["soft_binding"] == {"alg": alg, "value": value}
    assert payload["development_pki"] is True
    json.dumps(payload)


def test_manifest_states_ai_generation_and_links_to_the_log(signed: Signed, pki: DevelopmentPki) -> None:
    store = _store(signed.path, pki)
    manifest = store["manifests"][store["active_manifest"]]
    assertions = _assertions(manifest)
    actions = assertions["c2pa.actions.v2"]["actions"]
    assert [a["action"] for a in actions] == ["c2pa.created", "c2pa.watermarked.bound"]
    assert actions[0]["digitalSourceType"] == TRAINED_ALGORITHMIC_MEDIA
    assert actions[0]["softwareAgent"] == {"name": "toy-generator", "version": "0.3.1"}
    binding = assertions["c2pa.soft-binding"]
    assert binding["alg"] == ALG and binding["blocks"][0]["value"] == signed.result.soft_binding[1]
    log = assertions[LOG_ASSERTION]
    assert log["video_id"] == str(signed.video_id)
    assert log["event_ids"] == [f"{signed.video_id}:{n}" for n in (1, 2, 3)]
    assert log["moderation"]["verdict"] == "allow"
    assert [c["name"] for c in log["moderation"]["classifiers"]] == ["policy-clip", "likeness"]
    assert log["cameos"] == [{"cameo_id": "cameo-7f3a", "consent_grant_id": "grant-19c2"}]
    assert log["development_model"] is True
    assert "prompt" not in json.dumps(log) and "creator" not in json.dumps(log)
    assert manifest["thumbnail"]["format"] == "image/jpeg"


def test_thumbnail_is_a_jpeg_poster_frame(signed: Signed, pki: DevelopmentPki) -> None:
    import c2pa
    import cv2
    import numpy as np

    from provenance.credentials.c2pa_context import reading_context

    with reading_context(pki.trust()) as context, c2pa.Reader(str(signed.path), context=context) as reader:
        manifest = reader.get_active_manifest()
        assert manifest is not None
        sink = io.BytesIO()
        reader.resource_to_stream(manifest["thumbnail"]["identifier"], sink)
    image = cv2.imdecode(np.frombuffer(sink.getvalue(), np.uint8), cv2.IMREAD_COLOR)
    assert image is not None
    assert sink.getvalue()[:3] == b"\xff\xd8\xff"
    assert image.shape[:2] == (288, 160)


def test_signed_file_carries_the_watermark_of_its_video_id(signed: Signed) -> None:
    assert decode_watermark(signed.path) == payload_for(signed.video_id)


def test_remix_has_one_parent_ingredient_and_opened_action(remix: Signed, signed: Signed, pki: DevelopmentPki) -> None:
    store = _store(remix.path, pki)
    assert store["validation_state"] == "Trusted"
    manifest = store["manifests"][store["active_manifest"]]
    actions = _assertions(manifest)["c2pa.actions.v2"]["actions"]
    assert [a["action"] for a in actions] == ["c2pa.opened", "c2pa.edited", "c2pa.watermarked.bound"]
    assert actions[1]["digitalSourceType"] == TRAINED_ALGORITHMIC_MEDIA
    (ingredient,) = manifest["ingredients"]
    assert ingredient["relationship"] == "parentOf"
    assert ingredient["active_manifest"] == signed.result.manifest_id
    parent = store["manifests"][signed.result.manifest_id]
    assert _assertions(parent)[LOG_ASSERTION]["video_id"] == str(signed.video_id)
    assert _assertions(manifest)[LOG_ASSERTION]["remix_of"] == str(signed.video_id)


def test_blob_store_keeps_the_signed_file_and_the_manifest_store(
    tmp_path: Path, clip: Path, pki: DevelopmentPki
) -> None:
    blobs = BlobStore(tmp_path / "blobs")
    result = sign_video(clip, tmp_path / "out.mp4", manifest_inputs(uuid4()), pki.identity(), blob_store=blobs)
    assert result.signed_uri == f"blob:sha256:{result.signed_sha256}"
    assert blobs.read_bytes(result.signed_sha256) == (tmp_path / "out.mp4").read_bytes()
    assert blobs.read_bytes(result.manifest_sha256) == result.manifest_store
    assert result.manifest_store_uri == f"blob:sha256:{result.manifest_sha256}"
    assert result.to_payload().manifest_uri == result.manifest_store_uri  # what the VideoSigned event records


def test_callback_signer_signs_like_a_key_file(tmp_path: Path, clip: Path, pki: DevelopmentPki) -> None:
    key = serialization.load_pem_private_key(pki.key_file.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    calls: list[int] = []

    def hsm(data: bytes) -> bytes:
        calls.append(len(data))
        return key.sign(data, ec.ECDSA(hashes.SHA256()))

    identity = SigningIdentity(chain_file=pki.chain_file, trust=pki.trust(), sign_callback=hsm)
    result = sign_video(clip, tmp_path / "out.mp4", manifest_inputs(uuid4()), identity)
    assert calls
    assert _store(result.path, pki)["validation_state"] == "Trusted"


def _assert_nothing_signed(directory: Path) -> None:
    assert not (directory / "out.mp4").exists()
    assert [p.name for p in directory.iterdir() if p.name != "pki"] == []


def test_failing_callback_raises_signing_error_and_leaves_nothing(
    tmp_path: Path, clip: Path, pki: DevelopmentPki
) -> None:
    def refusing_hsm(data: bytes) -> bytes:
        raise RuntimeError("HSM offline")

    identity = SigningIdentity(chain_file=pki.chain_file, trust=pki.trust(), sign_callback=refusing_hsm)
    with pytest.raises(SigningError, match=r"C2PA signing of .* failed"):
        sign_video(clip, tmp_path / "out.mp4", manifest_inputs(uuid4()), identity)
    _assert_nothing_signed(tmp_path)


def test_expired_certificate_raises_signing_error(tmp_path: Path, clip: Path) -> None:
    now = dt.datetime.now(dt.UTC)
    expired = create_development_pki(
        tmp_path / "pki",
        validity=PkiValidity(leaf_not_before=now - dt.timedelta(days=30), leaf_not_after=now - dt.timedelta(days=1)),
    )
    with pytest.raises(SigningError, match="expired on"):
        sign_video(clip, tmp_path / "out.mp4", manifest_inputs(uuid4()), expired.identity())
    _assert_nothing_signed(tmp_path)


def test_unreachable_timestamp_authority_raises_signing_error(tmp_path: Path, clip: Path, pki: DevelopmentPki) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed once the block ends: nothing listens there
    identity = pki.identity(tsa_url=f"http://127.0.0.1:{port}/tsa")
    with pytest.raises(SigningError, match=f"C2PA signing of {clip.name} failed.*127.0.0.1:{port}"):
        sign_video(clip, tmp_path / "out.mp4", manifest_inputs(uuid4()), identity)
    _assert_nothing_signed(tmp_path)


def test_missing_input_or_parent_raises_signing_error(tmp_path: Path, clip: Path, pki: DevelopmentPki) -> None:
    with pytest.raises(SigningError, match="no such file"):
        sign_video(tmp_path / "missing.mp4", tmp_path / "out.mp4", manifest_inputs(uuid4()), pki.identity())
    with pytest.raises(SigningError, match="parent"):
        sign_video(clip, tmp_path / "out.mp4", manifest_inputs(uuid4()), pki.identity(), tmp_path / "gone.mp4")
    _assert_nothing_signed(tmp_path)


def test_non_video_input_raises_signing_error(tmp_path: Path, pki: DevelopmentPki) -> None:
    text = tmp_path / "render.mp4"
    text.write_text("not a video")
    with pytest.raises(SigningError, match="not in a video container"):
        sign_video(text, tmp_path / "out.mp4", manifest_inputs(uuid4()), pki.identity())
    assert not (tmp_path / "out.mp4").exists()
