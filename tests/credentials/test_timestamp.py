"""Trusted time-stamps: signatures that outlive their certificate, and a signing gate that never goes without.

The time-stamp authority is the development one (`devkit/timestamp_authority.py`), a real RFC 3161 server on
127.0.0.1 whose certificate is issued under the development root; an independent client library
(`rfc3161-client`) checks its answers.
"""

from __future__ import annotations

import datetime as dt
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from uuid import uuid4

import pytest
from cryptography import x509

from devkit.timestamp_authority import RunningAuthority, TimestampAuthority, serving
from provenance.credentials.errors import SigningError
from provenance.credentials.pki import TSA_CHAIN_FILE, DevelopmentPki, PkiValidity, create_development_pki
from provenance.credentials.signing import sign_video
from provenance.credentials.trust import ANCHORS_FILE
from provenance.credentials.verify import verify_file
from tests.credentials.support import manifest_inputs


@pytest.fixture
def authority(pki: DevelopmentPki) -> Iterator[RunningAuthority]:
    with serving(TimestampAuthority.from_directory(pki.directory)) as running:
        yield running


def ask(url: str, request: bytes) -> bytes:
    post = urllib.request.Request(url, data=request, headers={"Content-Type": "application/timestamp-query"})
    with urllib.request.urlopen(post, timeout=10) as answer:
        assert answer.headers["Content-Type"] == "application/timestamp-reply"
        return bytes(answer.read())


def test_the_authority_answers_rfc_3161_as_an_independent_client_checks_it(
    pki: DevelopmentPki, authority: RunningAuthority
) -> None:
    from rfc3161_client import PKIStatus, TimestampRequestBuilder, VerifierBuilder, decode_timestamp_response

    message = b"the bytes of a claim signature"
    request = TimestampRequestBuilder().data(message).nonce(nonce=True).cert_request(cert_request=True).build()
    response = decode_timestamp_response(ask(authority.url, request.as_bytes()))
    assert response.status == PKIStatus.GRANTED
    info = response.tst_info
    assert info.nonce == request.nonce
    assert abs((info.gen_time.replace(tzinfo=dt.UTC) - dt.datetime.now(dt.UTC)).total_seconds()) < 60
    tsa, intermediate = x509.load_pem_x509_certificates((pki.directory / TSA_CHAIN_FILE).read_bytes())
    [root] = x509.load_pem_x509_certificates((pki.directory / ANCHORS_FILE).read_bytes())
    verifier = (
        VerifierBuilder().add_root_certificate(root).add_intermediate_certificate(intermediate).nonce(request.nonce)
    ).build()
    assert verifier.verify_message(response, message)
    with pytest.raises(Exception, match=r"(?i)verif|mismatch|hash"):
        verifier.verify_message(response, b"other bytes")
    assert tsa.extensions.get_extension_for_class(x509.ExtendedKeyUsage).critical


def test_a_malformed_request_is_rejected_not_crashed_on(authority: RunningAuthority) -> None:
    from asn1crypto import core, tsp

    class Answer(core.Sequence):  # only the status: a rejection carries no token
        _fields = [("status", tsp.PKIStatusInfo), ("time_stamp_token", core.Any, {"optional": True})]

    answer = Answer.load(ask(authority.url, b"\x30\x03\x02\x01\x01"))
    assert answer["status"]["status"].native == "rejection"
    assert "time_stamp_token" not in answer.native or answer.native["time_stamp_token"] is None


def test_a_time_stamped_file_stays_trusted_after_its_certificate_expires(tmp_path: Path, clip: Path) -> None:
    now = dt.datetime.now(dt.UTC)
    expires = now + dt.timedelta(seconds=6)
    pki = create_development_pki(
        tmp_path / "pki", validity=PkiValidity(leaf_not_before=now - dt.timedelta(minutes=5), leaf_not_after=expires)
    )
    with serving(TimestampAuthority.from_directory(pki.directory)) as running:
        sign_video(clip, tmp_path / "stamped.mp4", manifest_inputs(uuid4()), pki.identity(tsa_url=running.url))
        assert running.authority.issued == 1
    sign_video(clip, tmp_path / "plain.mp4", manifest_inputs(uuid4()), pki.identity())
    assert verify_file(tmp_path / "plain.mp4", pki.trust()).state == "Trusted"
    time.sleep(max(0.0, (expires - dt.datetime.now(dt.UTC)).total_seconds()) + 1)

    stamped = verify_file(tmp_path / "stamped.mp4", pki.trust())
    assert stamped.state == "Trusted", stamped.failures
    plain = verify_file(tmp_path / "plain.mp4", pki.trust())
    assert plain.state == "Invalid" and "signingCredential.expired" in plain.failures


def credentials_stage(pki: DevelopmentPki, tmp_path: Path, url: str) -> object:
    from kernel.blobstore import BlobStore
    from provenance.stages import CredentialsStage

    stage = CredentialsStage(BlobStore(tmp_path / "blobs"), pki.directory, tmp_path / "work", tsa_url=url)
    stage.TSA_DELAYS_S = (0.05, 0.05, 0.05)
    return stage


def test_the_signing_gate_retries_a_failing_authority_and_never_signs_without_it(
    pki: DevelopmentPki, authority: RunningAuthority, tmp_path: Path, clip: Path
) -> None:
    stage = credentials_stage(pki, tmp_path, authority.url)
    sign = lambda out: stage._time_stamped(  # noqa: E731
        lambda: sign_video(clip, out, manifest_inputs(uuid4()), stage.identity)  # type: ignore[attr-defined]
    )
    authority.refuse(2)  # a short outage: the third try gets through
    assert sign(tmp_path / "after-outage.mp4").manifest_id
    assert authority.authority.issued == 1

    authority.refuse(1000)  # down for good
    with pytest.raises(SigningError, match="did not answer in 4 tries, or refused, and a signature is not made"):
        sign(tmp_path / "never.mp4")
    assert not (tmp_path / "never.mp4").exists()

    issued = authority.authority.issued
    authority.refuse(0)
    rejection = authority.authority.respond(b"not a request")  # an RFC 3161 rejection, as an overloaded one sends
    authority.authority.respond = lambda request: rejection  # type: ignore[method-assign]
    with pytest.raises(SigningError, match=f"{authority.url} did not answer in 4 tries, or refused"):
        sign(tmp_path / "rejected.mp4")  # tried again as an outage is, then refused without a time-stamp
    assert authority.authority.issued == issued and not (tmp_path / "rejected.mp4").exists()


def test_the_trust_settings_are_the_sdks_current_ones_and_anchor_both_signers_and_time_stamps(
    pki: DevelopmentPki, authority: RunningAuthority, tmp_path: Path, clip: Path
) -> None:
    """Pinned: an SDK upgrade that drops or renames `trust.anchors` makes this fail instead of silently
    reporting every file as untrusted."""
    from provenance.credentials.c2pa_context import settings_for

    trust = settings_for(pki.trust())["trust"]
    assert set(trust) == {"anchors"}  # not the deprecated trust.trust_anchors
    assert [a["trust_kind"] for a in trust["anchors"]] == ["manifest", "tsa"]
    signed = tmp_path / "signed.mp4"
    sign_video(clip, signed, manifest_inputs(uuid4()), pki.identity(tsa_url=authority.url))
    report = verify_file(signed, pki.trust())
    assert report.state == "Trusted"
    assert {"signingCredential.trusted", "timeStamp.trusted"} <= set(report.success_codes)
    assert verify_file(signed, None).state == "Valid"  # no anchors: signed, but not by anyone we trust
