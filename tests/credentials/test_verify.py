from __future__ import annotations

import datetime as dt
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest

from provenance.credentials.errors import SigningError
from provenance.credentials.manifest import TRAINED_ALGORITHMIC_MEDIA
from provenance.credentials.pki import DevelopmentPki, PkiValidity, create_development_pki
from provenance.credentials.signing import sign_video
from provenance.credentials.verify import (
    EMPTY_FILE,
    FILE_NOT_FOUND,
    NOT_A_FILE,
    NOT_VIDEO,
    REMOTE_MANIFEST_NOT_FETCHED,
    UNSUPPORTED_FORMAT,
    VerificationReport,
    verify_file,
)
from provenance.credentials.watermark import payload_for, soft_binding_for
from tests.credentials.conftest import Signed
from tests.credentials.support import FakeStatusLookup, flip_media_byte, manifest_inputs, reencode


@pytest.fixture(autouse=True)
def no_python_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any connection attempted from Python during verification fails the test."""

    def refuse(self: socket.socket, address: object) -> None:
        raise AssertionError(f"verification tried to connect to {address}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)


@pytest.fixture()
def lookup(signed: Signed, remix: Signed) -> FakeStatusLookup:
    fake = FakeStatusLookup()
    fake.add(signed.video_id, soft_binding_for(signed.video_id), {"state": "published"})
    fake.add(remix.video_id, soft_binding_for(remix.video_id), {"state": "taken_down", "reason": "consent revoked"})
    return fake


def test_signed_file_is_trusted_and_resolves_to_its_video(
    signed: Signed, pki: DevelopmentPki, lookup: FakeStatusLookup
) -> None:
    report = verify_file(signed.path, pki.trust(), lookup)
    assert (report.state, report.chain_state, report.failures) == ("Trusted", "Trusted", ())
    assert report.recovered_by == "manifest"
    assert report.video_id == str(signed.video_id)
    assert report.status == {"state": "published"}
    assert report.signer == pki.signer and report.development_pki is True
    assert report.manifest_id == signed.result.manifest_id
    assert report.soft_binding == dict(zip(("alg", "value"), soft_binding_for(signed.video_id), strict=True))
    body = report.to_json()
    for key in ("state", "failures", "ingredients", "video_id", "status", "recovered_by", "signer", "development_pki"):
        assert key in body


def test_without_trust_anchors_a_good_signature_is_only_valid(signed: Signed) -> None:
    report = verify_file(signed.path, None)
    assert report.state == "Valid"
    assert report.failures == ("signingCredential.untrusted",)


def test_certificate_from_another_root_is_not_trusted(
    tmp_path: Path, clip: Path, pki: DevelopmentPki, other_pki: DevelopmentPki
) -> None:
    result = sign_video(clip, tmp_path / "other.mp4", manifest_inputs(uuid4()), other_pki.identity())
    report = verify_file(result.path, pki.trust())
    assert report.state == "Valid"
    assert "signingCredential.untrusted" in report.failures
    assert verify_file(result.path, other_pki.trust()).state == "Trusted"


def test_remix_reads_back_its_chain(
    remix: Signed, signed: Signed, pki: DevelopmentPki, lookup: FakeStatusLookup
) -> None:
    report = verify_file(remix.path, pki.trust(), lookup)
    assert report.state == report.chain_state == "Trusted"
    assert report.video_id == str(remix.video_id)
    assert report.status == {"state": "taken_down", "reason": "consent revoked"}
    (parent,) = report.ingredients
    assert parent.depth == 1 and parent.relationship == "parentOf"
    assert (parent.state, parent.failures) == ("Trusted", ())
    assert parent.video_id == str(signed.video_id)
    assert parent.manifest_id == signed.result.manifest_id


def test_remix_of_a_remix_reads_back_to_the_origin(
    tmp_path: Path, clip: Path, remix: Signed, signed: Signed, pki: DevelopmentPki
) -> None:
    video_id = uuid4()
    inputs = manifest_inputs(video_id, remix_of=remix.video_id)
    result = sign_video(clip, tmp_path / "remix-2.mp4", inputs, pki.identity(), remix.path)
    report = verify_file(result.path, pki.trust())
    assert report.chain_state == "Trusted"
    assert [(i.depth, i.video_id, i.state) for i in report.ingredients] == [
        (1, str(remix.video_id), "Trusted"),
        (2, str(signed.video_id), "Trusted"),
    ]


def test_parent_tampered_before_the_remix_shows_in_the_chain(
    remix_of_tampered_parent: Signed, pki: DevelopmentPki
) -> None:
    report = verify_file(remix_of_tampered_parent.path, pki.trust())
    assert report.state == "Trusted"  # the remix's own claim is intact ...
    assert report.chain_state == "Invalid"  # ... but its parent is not
    (parent,) = report.ingredients
    assert parent.state == "Invalid"
    assert "assertion.bmffHash.mismatch" in parent.failures
    assert "ingredient" in report.reason


def test_tampered_video_byte_is_invalid(tmp_path: Path, signed: Signed, pki: DevelopmentPki) -> None:
    tampered = tmp_path / "tampered.mp4"
    tampered.write_bytes(flip_media_byte(signed.path.read_bytes()))
    report = verify_file(tampered, pki.trust())
    assert report.state == "Invalid"
    assert report.failures == ("assertion.bmffHash.mismatch",)
    assert report.claimed_video_id == str(signed.video_id)
    assert report.video_id is None  # an invalid manifest does not speak for the platform


def test_edited_assertion_is_invalid(tmp_path: Path, signed: Signed, pki: DevelopmentPki) -> None:
    data = bytearray(signed.path.read_bytes())
    needle = str(signed.video_id).encode()
    at = data.find(needle)
    assert at > 0
    data[at] = ord("0") if data[at] != ord("0") else ord("1")  # a different video id in org.provenance.log
    edited = tmp_path / "edited.mp4"
    edited.write_bytes(bytes(data))
    report = verify_file(edited, pki.trust())
    assert report.state == "Invalid"
    assert "assertion.hashedURI.mismatch" in report.failures


def test_truncated_file_is_invalid(tmp_path: Path, signed: Signed, pki: DevelopmentPki) -> None:
    data = signed.path.read_bytes()
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(data[: len(data) * 2 // 3])
    report = verify_file(truncated, pki.trust())
    assert report.state == "Invalid"
    assert report.failures
    assert report.manifest_id is not None and report.recovered_by is None  # read, but it speaks for nobody


def _sign_with_short_lived_leaf(tmp_path: Path, clip: Path) -> tuple[DevelopmentPki, Path, dt.datetime]:
    """Sign with a leaf that expires a few seconds later (longer windows if this machine is slow)."""
    for seconds in (3, 10, 30):
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        expires = now + dt.timedelta(seconds=seconds)
        pki = create_development_pki(
            tmp_path / f"short-{seconds}",
            validity=PkiValidity(leaf_not_before=now - dt.timedelta(days=1), leaf_not_after=expires),
        )
        try:
            result = sign_video(clip, tmp_path / f"short-{seconds}.mp4", manifest_inputs(uuid4()), pki.identity())
        except SigningError:
            continue
        return pki, result.path, expires
    raise AssertionError("could not sign within 30 s")


def test_expired_certificate_is_invalid(tmp_path: Path, clip: Path) -> None:
    pki, path, expires = _sign_with_short_lived_leaf(tmp_path, clip)
    assert verify_file(path, pki.trust()).state == "Trusted"
    time.sleep(max(0.0, (expires - dt.datetime.now(dt.UTC)).total_seconds()) + 1.1)
    report = verify_file(path, pki.trust())
    assert report.state == "Invalid"
    assert "signingCredential.expired" in report.failures


def test_manifest_stripped_by_reencoding_resolves_through_the_watermark(
    tmp_path: Path, signed: Signed, pki: DevelopmentPki, lookup: FakeStatusLookup
) -> None:
    stripped = reencode(signed.path, tmp_path / "uploaded.mp4", crf=23)
    report = verify_file(stripped, pki.trust(), lookup)
    assert report.state == "NoManifest"
    assert report.failures == ()
    assert report.recovered_by == "watermark"
    assert report.video_id == str(signed.video_id)
    assert report.status == {"state": "published"}
    assert report.soft_binding == {"alg": signed.result.soft_binding[0], "value": signed.result.soft_binding[1]}


def test_a_video_found_only_by_its_watermark_is_the_watermark_video(
    tmp_path: Path, signed: Signed, pki: DevelopmentPki, lookup: FakeStatusLookup
) -> None:
    stripped = reencode(signed.path, tmp_path / "uploaded.mp4", crf=18)
    body = verify_file(stripped, pki.trust(), lookup).to_json()
    assert (body["recovered_by"], body["video_id"]) == ("watermark", str(signed.video_id))
    assert body["watermark_video_id"] == str(signed.video_id)


def test_unknown_watermark_is_reported_but_not_resolved(tmp_path: Path, signed: Signed, pki: DevelopmentPki) -> None:
    stripped = reencode(signed.path, tmp_path / "uploaded.mp4", crf=18)
    report = verify_file(stripped, pki.trust(), FakeStatusLookup())
    assert report.recovered_by is None and report.video_id is None
    assert report.soft_binding is not None and report.soft_binding["value"] == signed.result.soft_binding[1]


def test_webm_copy_cannot_carry_a_manifest_but_keeps_the_watermark(
    tmp_path: Path, signed: Signed, pki: DevelopmentPki, lookup: FakeStatusLookup
) -> None:
    webm = reencode(signed.path, tmp_path / "copy.webm", codec="libvpx")
    report = verify_file(webm, pki.trust(), lookup)
    assert (report.state, report.failures) == ("NoManifest", (UNSUPPORTED_FORMAT,))
    assert report.container == "matroska"
    assert report.recovered_by == "watermark" and report.video_id == str(signed.video_id)


def test_unmarked_video_without_manifest(clip: Path, pki: DevelopmentPki) -> None:
    report = verify_file(clip, pki.trust(), FakeStatusLookup())
    assert (report.state, report.failures, report.recovered_by) == ("NoManifest", (), None)
    assert report.watermark_checked


def _png(path: Path) -> Path:
    import cv2
    import numpy as np

    cv2.imwrite(str(path), np.full((32, 32, 3), 127, np.uint8))
    return path


@pytest.fixture()
def bad_inputs(tmp_path: Path) -> Iterator[dict[str, Path]]:
    text = tmp_path / "notes.mp4"
    text.write_text("#EXTM3U\n#EXTINF:1,\nhttp://127.0.0.1:9/segment.ts\n")
    empty = tmp_path / "empty.mp4"
    empty.touch()
    sparse = tmp_path / "huge.mp4"
    with open(sparse, "wb") as handle:
        handle.truncate(1 << 30)
    folder = tmp_path / "folder.mp4"
    folder.mkdir()
    yield {
        "text": text,
        "png": _png(tmp_path / "still.png"),
        "empty": empty,
        "sparse": sparse,
        "folder": folder,
        "missing": tmp_path / "missing.mp4",
    }
    os.unlink(sparse)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("text", ("NoManifest", (UNSUPPORTED_FORMAT,))),
        ("png", ("NoManifest", (NOT_VIDEO,))),
        ("empty", ("NoManifest", (EMPTY_FILE,))),
        ("sparse", ("NoManifest", (UNSUPPORTED_FORMAT,))),
        ("folder", ("NoManifest", (NOT_A_FILE,))),
        ("missing", ("NoManifest", (FILE_NOT_FOUND,))),
    ],
)
def test_unreadable_inputs_get_their_own_result(
    bad_inputs: dict[str, Path], pki: DevelopmentPki, name: str, expected: tuple[str, tuple[str, ...]]
) -> None:
    report = verify_file(bad_inputs[name], pki.trust(), FakeStatusLookup())
    assert (report.state, report.failures) == expected
    assert report.reason and "\n" not in report.reason
    assert report.recovered_by is None


def _remote_only_manifest(tmp_path: Path, clip: Path, pki: DevelopmentPki, url: str) -> Path:
    import c2pa

    from provenance.credentials.c2pa_context import signing_context

    identity = pki.identity()
    target = tmp_path / "remote.mp4"
    created = {"action": "c2pa.created", "digitalSourceType": TRAINED_ALGORITHMIC_MEDIA}
    definition = {
        "title": "remote.mp4",
        "format": "video/mp4",
        "assertions": [{"label": "c2pa.actions.v2", "data": {"actions": [created]}}],
    }
    info = c2pa.C2paSignerInfo(
        c2pa.C2paSigningAlg.ES256, identity.chain_pem().encode(), identity.key_pem().encode(), None
    )
    with signing_context(identity) as context, c2pa.Signer.from_info(info) as signer:
        builder = c2pa.Builder(definition, context)
        builder.set_no_embed()
        builder.set_remote_url(url)
        with open(clip, "rb") as src, open(target, "w+b") as dst:
            builder.sign(signer, "video/mp4", src, dst)
    return target


def test_remote_manifest_is_never_fetched(tmp_path: Path, clip: Path, pki: DevelopmentPki) -> None:
    """A file pointing at a manifest URL: the verifier must not connect (the native SDK bypasses Python)."""
    import c2pa

    from provenance.credentials.c2pa_context import settings_for

    with socket.create_server(("127.0.0.1", 0)) as server:
        server.settimeout(0.5)
        url = f"http://127.0.0.1:{server.getsockname()[1]}/manifest.c2pa"
        remote = _remote_only_manifest(tmp_path, clip, pki, url)
        connections: list[object] = []

        def accept_one() -> None:
            try:
                conn, _ = server.accept()
                connections.append(conn)
                conn.close()
            except TimeoutError:
                pass

        listener = threading.Thread(target=accept_one)
        listener.start()
        report = verify_file(remote, pki.trust())
        listener.join()
        assert connections == []
        assert report.state == "NoManifest"
        assert report.failures == (REMOTE_MANIFEST_NOT_FETCHED,)

        # Control: the same file read with remote fetching on does reach the server.
        listener = threading.Thread(target=accept_one)
        listener.start()
        settings = settings_for(pki.trust())
        settings["verify"]["remote_manifest_fetch"] = True
        with c2pa.Context.from_dict(settings) as context, pytest.raises(c2pa.C2paError):
            c2pa.Reader(str(remote), context=context)
        listener.join()
        assert len(connections) == 1


def test_report_json_is_serialisable(remix_of_tampered_parent: Signed, pki: DevelopmentPki) -> None:
    import json

    report: VerificationReport = verify_file(remix_of_tampered_parent.path, pki.trust())
    body = json.loads(json.dumps(report.to_json()))
    assert body["chain_state"] == "Invalid"
    assert body["ingredients"][0]["state"] == "Invalid"
    assert body["ingredients"][0]["failures"] == ["assertion.bmffHash.mismatch"]


def test_an_unanchored_manifest_claiming_our_video_gets_no_status_from_it(
    signed: Signed, lookup: FakeStatusLookup
) -> None:
    """Without the anchor, the manifest is only `Valid`: its claim is reported, the status comes from the watermark."""
    report = verify_file(signed.path, None, lookup)
    assert report.state == "Valid" and report.claimed_video_id == str(signed.video_id)
    assert report.recovered_by == "watermark" and report.watermark_video_id == str(signed.video_id)
    assert report.status == {"state": "published"} and report.conflict is None
    claims_only = verify_file(signed.path, None, FakeStatusLookup())  # no watermark known: nothing attached
    assert claims_only.video_id is None and claims_only.status is None


def test_the_watermark_is_read_beside_a_trusted_manifest_and_a_conflict_is_reported(
    signed: Signed, pki: DevelopmentPki, lookup: FakeStatusLookup
) -> None:
    report = verify_file(signed.path, pki.trust(), lookup)
    assert report.watermark_checked and report.watermark_video_id == str(signed.video_id) and report.conflict is None
    other = uuid4()
    elsewhere = FakeStatusLookup()
    elsewhere.add(other, soft_binding_for(signed.video_id), {"state": "published"})
    elsewhere.statuses[signed.video_id] = {"state": "published"}
    conflicted = verify_file(signed.path, pki.trust(), elsewhere)
    assert conflicted.video_id == str(signed.video_id) and conflicted.watermark_video_id == str(other)
    assert conflicted.conflict is not None and str(other) in conflicted.conflict


def test_an_ingredient_is_judged_by_todays_anchors_not_by_what_the_remix_signer_knew(
    tmp_path: Path, clip: Path, pki: DevelopmentPki, other_pki: DevelopmentPki
) -> None:
    from provenance.credentials.trust import TrustConfig

    claimed = uuid4()  # an untrusted signer can claim any of our videos' ids: it is never taken as ours
    parent = sign_video(clip, tmp_path / "elsewhere.mp4", manifest_inputs(claimed), other_pki.identity()).path
    remix = sign_video(clip, tmp_path / "remix.mp4", manifest_inputs(uuid4(), remix_of=uuid4()), pki.identity(), parent)
    # When the remix was signed, its signer did not trust the parent's: that is what the file stored.
    stored = verify_file(remix.path, pki.trust())
    assert stored.chain_state == "Valid" and stored.ingredients[0].failures == ("signingCredential.untrusted",)
    assert stored.ingredients[0].video_id is None and stored.ingredients[0].claimed_video_id == str(claimed)
    # A verifier that trusts both roots today trusts the whole chain, as c2patool does.
    both = TrustConfig(anchor_files=(pki.anchors_file, other_pki.anchors_file))
    today = verify_file(remix.path, both)
    assert today.chain_state == "Trusted" and today.ingredients[0].state == "Trusted"
    assert today.ingredients[0].video_id == str(claimed)


def test_a_file_whose_name_is_not_utf8_is_read_like_any_other(tmp_path: Path, signed: Signed) -> None:
    import shutil
    import subprocess
    import sys

    odd = Path(os.fsdecode(os.fsencode(tmp_path) + b"/clip-\xff\xfe.mp4"))  # OpenCV crashed on such names
    shutil.copyfile(signed.path, odd)
    script = (
        "import sys; from pathlib import Path; from provenance.credentials.verify import verify_file; "
        "from moderation.sampling import VideoSampler; path = Path(sys.argv[1]); "
        "report = verify_file(path, None); "
        "print(report.state, report.claimed_video_id, sum(len(b) for b in VideoSampler(path).batches()) > 0)"
    )
    done = subprocess.run([sys.executable, "-c", script, odd], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["Valid", str(signed.video_id), "True"]


def test_a_video_of_odd_width_is_read_for_a_watermark(tmp_path: Path) -> None:
    import av
    import numpy as np

    odd = tmp_path / "odd.avi"  # 4:2:0 cannot hold an odd width: PyAV refused to lay such frames out so
    with av.open(str(odd), "w") as container:
        stream = container.add_stream("ffv1", rate=12)
        stream.width, stream.height, stream.pix_fmt = 65, 31, "gray"
        for n in range(12):
            frame = av.VideoFrame.from_ndarray(np.full((31, 65), 40 + 5 * n, np.uint8), format="gray")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    report = verify_file(odd, None)
    assert (report.state, report.watermark_checked) == ("NoManifest", True)


def test_a_file_whose_manifest_cannot_be_parsed_is_invalid_and_still_found_by_its_watermark(
    tmp_path: Path, signed: Signed, pki: DevelopmentPki, lookup: FakeStatusLookup
) -> None:
    trailing = tmp_path / "trailing.mp4"  # players still play it; the C2PA parser refuses its box sizes
    trailing.write_bytes(signed.path.read_bytes() + os.urandom(3000))
    report = verify_file(trailing, pki.trust(), lookup)
    assert report.state == "Invalid" and report.failures[0] == "provenance.unreadable"
    assert (report.watermark_checked, report.video_id, report.status) == (
        True,
        str(signed.video_id),
        {"state": "published"},
    )


def test_a_manifest_box_copied_from_another_file_makes_it_invalid_not_a_crash(
    tmp_path: Path, signed: Signed, remix: Signed, pki: DevelopmentPki, lookup: FakeStatusLookup
) -> None:
    """The remix's manifest box is larger than the parent's: the media offsets shift, and OpenCV opens the file
    with no pixel format (-1), which once crashed the watermark reader."""
    import subprocess
    import sys

    from tests.credentials.support import top_level_boxes

    parent, donor = signed.path.read_bytes(), remix.path.read_bytes()
    at, size, _ = next(b for b in top_level_boxes(parent) if b[2] == b"uuid")
    donor_at, donor_size, _ = next(b for b in top_level_boxes(donor) if b[2] == b"uuid")
    assert donor_size != size
    transplanted = tmp_path / "transplanted.mp4"
    transplanted.write_bytes(parent[:at] + donor[donor_at : donor_at + donor_size] + parent[at + size :])
    report = verify_file(transplanted, pki.trust(), lookup)
    assert report.state == "Invalid" and "assertion.bmffHash.mismatch" in report.failures
    assert report.claimed_video_id == str(remix.video_id) and report.video_id != str(remix.video_id)
    assert report.watermark_checked
    # In a process of its own, as the command line runs it, FFmpeg's complaints about the damaged stream stay
    # off stderr (OpenCV reads the log level once, at a process's first capture).
    script = (
        "import sys; from pathlib import Path; from provenance.credentials.verify import verify_file; "
        "print(verify_file(Path(sys.argv[1]), None).state)"
    )
    done = subprocess.run([sys.executable, "-c", script, transplanted], capture_output=True, text=True, timeout=300)
    assert (done.returncode, done.stdout.split(), done.stderr) == (0, ["Invalid"], "")


def test_a_clip_spliced_from_two_videos_names_both_and_reports_the_worse_status(
    tmp_path: Path, signed: Signed, remix: Signed, pki: DevelopmentPki
) -> None:
    """Half a second of a live video in front of a taken-down one: the taken-down status is the one reported."""
    from provenance.credentials.signing import sign_watermarked_video
    from tests.credentials.support import splice

    live = {"video_id": str(signed.video_id), "status": "published", "takedown": None, "consent_revoked": False}
    down = {"video_id": str(remix.video_id), "status": "taken_down", "takedown": {}, "consent_revoked": True}
    fake = FakeStatusLookup()
    fake.add(signed.video_id, soft_binding_for(signed.video_id), live)
    fake.add(remix.video_id, soft_binding_for(remix.video_id), down)
    spliced = splice(tmp_path / "spliced.mp4", (signed.path, 12), (remix.path, None))
    report = verify_file(spliced, pki.trust(), fake)
    assert (report.state, report.recovered_by) == ("NoManifest", "watermark")
    assert (report.video_id, report.status, report.watermark_video_id) == (
        str(remix.video_id),
        down,
        str(remix.video_id),
    )
    assert report.soft_binding == dict(zip(("alg", "value"), soft_binding_for(remix.video_id), strict=True))
    assert report.conflict and str(signed.video_id) in report.conflict and str(remix.video_id) in report.conflict
    body = report.to_json()
    assert [(w["video_id"], w["status"]) for w in body["watermarks"]] == [
        (str(signed.video_id), live),
        (str(remix.video_id), down),
    ]
    # Signed as a video of its own by a trusted signer: the manifest's video is named, and still the worse status
    # of the videos in its frames is the one reported.
    other = uuid4()
    fake.add(other, soft_binding_for(other), {"video_id": str(other), "status": "published", "consent_revoked": False})
    resigned = sign_watermarked_video(spliced, tmp_path / "resigned.mp4", manifest_inputs(other), pki.identity())
    trusted = verify_file(resigned.path, pki.trust(), fake)
    assert (trusted.state, trusted.claimed_video_id) == ("Trusted", str(other))
    assert (trusted.video_id, trusted.status, trusted.recovered_by) == (str(remix.video_id), down, "watermark")
    assert trusted.conflict and all(str(v) in trusted.conflict for v in (other, signed.video_id, remix.video_id))
    assert [w["video_id"] for w in trusted.to_json()["watermarks"]] == [str(signed.video_id), str(remix.video_id)]


@pytest.mark.parametrize("length", ["unsaid", "understated"])
def test_a_splice_in_a_file_that_does_not_say_how_long_it_is_truly_is_read_to_its_end(
    tmp_path: Path, signed: Signed, remix: Signed, length: str
) -> None:
    """A live video's first frames, then a taken-down one past the first 120 frames, in Matroska written as a
    stream (no duration, no index) or saying it lasts half a second: the windows still spread over the whole
    clip, and both videos are found."""
    import struct

    import av

    from provenance.credentials.watermark import decode_watermarks
    from tests.credentials.support import splice

    spliced = splice(tmp_path / "spliced.mp4", (signed.path, 12), (None, 130), (remix.path, None))
    remuxed = tmp_path / "remuxed.mkv"

    class Pipe:  # a destination that cannot seek: the muxer writes no duration and no cues
        def __init__(self, handle: Any) -> None:
            self.write = handle.write

    with open(remuxed, "wb") as handle, av.open(str(spliced)) as src:
        dst = av.open(Pipe(handle) if length == "unsaid" else handle, "w", "matroska")
        out = dst.add_stream_from_template(src.streams.video[0])
        for packet in src.demux(src.streams.video[0]):
            if packet.dts is not None:
                packet.stream = out
                dst.mux(packet)
        dst.close()
    if length == "understated":  # the segment's Duration element (an 8-byte float, in milliseconds) lies
        data = remuxed.read_bytes()
        at = data.index(b"\x44\x89\x88") + 3
        remuxed.write_bytes(data[:at] + struct.pack(">d", 500.0) + data[at + 8 :])
    with av.open(str(remuxed)) as check:
        assert not check.streams.video[0].frames and (check.duration or 0) < 10**6  # at most a second, it says
    assert decode_watermarks(remuxed) == (payload_for(signed.video_id), payload_for(remix.video_id))


def test_a_trusted_file_whose_frames_cannot_be_read_for_watermarks_says_so(
    tmp_path: Path, signed: Signed, remix: Signed, pki: DevelopmentPki
) -> None:
    """A trusted signer's file of more video streams than are read, a taken-down video among them: the manifest's
    video is reported, and so is that the frames were not read, rather than nothing at all."""
    from provenance.cli.render import render_verification
    from provenance.credentials.signing import sign_watermarked_video
    from provenance.credentials.watermark import MAX_VIDEO_STREAMS
    from tests.credentials.test_watermark_files import with_streams

    many = with_streams(tmp_path / "many.mp4", [signed.path] * MAX_VIDEO_STREAMS + [remix.path], default=4)
    other = uuid4()
    resigned = sign_watermarked_video(many, tmp_path / "resigned.mp4", manifest_inputs(other), pki.identity())
    fake = FakeStatusLookup()
    fake.add(other, soft_binding_for(other), {"video_id": str(other), "status": "published"})
    report = verify_file(resigned.path, pki.trust(), fake)
    assert (report.state, report.video_id) == ("Trusted", str(other))
    assert report.watermark_error and "too many to verify" in report.watermark_error
    assert report.to_json()["watermark_error"] == report.watermark_error
    shown = render_verification(report.to_json(), trusted_anchors=True)
    assert any(line.startswith("  watermark NOT read: ") and "too many to verify" in line for line in shown)
