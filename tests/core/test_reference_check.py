"""A cameo's reference is one face in an image of bounded size; anything else is refused, nothing recorded."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest

from devkit.clip import synthesize_face, synthesize_scene
from kernel.errors import InvalidInput
from provenance.application import ProvenanceApp
from provenance.reference_check import MAX_JPEG_SCANS, MAX_REFERENCE_BYTES, MAX_REFERENCE_SIDE, OneFaceCheck, image_size
from provenance.stages import encode_png
from tests.core.support import face


def _png_header_claiming(width: int, height: int) -> bytes:
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + header
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(header)) + chunk + struct.pack(">I", zlib.crc32(chunk))


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (b"", "empty"),
        (b"just some text", "not a PNG or JPEG"),
        (_png_header_claiming(100_000, 100_000), "100000x100000"),
        (_png_header_claiming(16, 16), "16x16"),
        (b"\x89PNG\r\n\x1a\n" + b"\0" * (MAX_REFERENCE_BYTES + 1), "at most"),
        (encode_png(synthesize_scene(3, 320, 240)), "found 0"),
        (encode_png(np.concatenate([synthesize_face(0, 256), synthesize_face(4, 256)], axis=1)), "found 2"),
    ],
    ids=["empty", "text", "bomb", "tiny", "too-large", "no-face", "two-faces"],
)
def test_what_is_not_one_face_is_refused(image: bytes, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        OneFaceCheck().check(image)


def test_a_jpeg_face_is_accepted_and_its_size_read_from_the_header() -> None:
    import cv2

    ok, jpeg = cv2.imencode(".jpg", synthesize_face(2, 256)[:, :, ::-1])
    assert ok
    assert image_size(bytes(jpeg)) == (256, 256)
    OneFaceCheck().check(bytes(jpeg))


def _with_fill_byte_and_decoy(jpeg: bytes, claimed: tuple[int, int]) -> bytes:
    """A fill byte before the real frame header (JPEG allows any number), then a comment segment that holds a
    frame header claiming another size where a reader that misses the fill byte would land."""
    at = jpeg.index(b"\xff\xc0")
    (length,) = struct.unpack(">H", jpeg[at + 2 : at + 4])
    frame = jpeg[at : at + 2 + length]
    comment = bytearray(50_000)
    misread_jump = at + 2 + (0xC0 << 8 | length >> 8)  # where skipping "FF FF" as a marker would take a reader
    decoy = b"\xff\xc0\x00\x11\x08" + struct.pack(">HH", claimed[1], claimed[0]) + b"\x03" + bytes(9)
    offset = misread_jump - (at + 1 + len(frame) + 4)
    comment[offset : offset + len(decoy)] = decoy
    segment = b"\xff\xfe" + struct.pack(">H", len(comment) + 2) + bytes(comment)
    return jpeg[:at] + b"\xff" + frame + segment + jpeg[at + 2 + length :]


def test_a_jpeg_header_is_read_as_its_decoder_reads_it() -> None:
    import cv2

    face_jpeg = bytes(cv2.imencode(".jpg", synthesize_face(2, 256)[:, :, ::-1])[1])
    filled = _with_fill_byte_and_decoy(face_jpeg, (100, 100))
    assert image_size(filled) == (256, 256)
    OneFaceCheck().check(filled)  # a legal JPEG with a fill byte is a JPEG like any other

    wide = np.full((64, MAX_REFERENCE_SIDE + 200, 3), 128, np.uint8)
    bomb = _with_fill_byte_and_decoy(bytes(cv2.imencode(".jpg", wide)[1]), (100, 100))
    assert image_size(bomb) == (MAX_REFERENCE_SIDE + 200, 64)
    with pytest.raises(InvalidInput, match=f"{MAX_REFERENCE_SIDE + 200}x64"):
        OneFaceCheck().check(bomb)


def test_a_refused_reference_records_nothing(app: ProvenanceApp, people: dict) -> None:
    before = app.recorder.max_notification_id() or 0
    with pytest.raises(InvalidInput, match="not a PNG or JPEG"):
        app.register_cameo(people["alice"], b"a text file, not a face")
    assert (app.recorder.max_notification_id() or 0) == before
    assert not any(p.is_file() for p in app.blobs.root.rglob("*"))  # no encrypted blob, no orphan
    assert app.register_cameo(people["alice"], face())  # a face goes through


def test_a_jpeg_of_thousands_of_scans_is_refused_before_it_is_decoded() -> None:
    import cv2

    progressive = bytes(cv2.imencode(".jpg", synthesize_face(2, 256)[:, :, ::-1], [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])[1])
    OneFaceCheck().check(progressive)  # a progressive photo's ten or so scans are fine
    end = progressive.rindex(b"\xff\xd9")
    last_scan = progressive[progressive.rindex(b"\xff\xda") : end]
    many = progressive[:end] + last_scan * 200 + progressive[end:]  # each scan costs a pass over the picture
    with pytest.raises(InvalidInput, match=f"at most {MAX_JPEG_SCANS}"):
        OneFaceCheck().check(many)
