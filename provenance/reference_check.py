"""What a cameo's reference must be before anything is recorded: one face, in an image of bounded size.

A reference that is not a decodable image, or shows no face or several, would make the likeness classifier
fail (or match the wrong person) for every video on the platform, so registration refuses it with a clear
error. Sizes are checked from the file's header before it is decoded, so a small file that claims a huge
picture (a decompression bomb) is refused without allocating it.
"""

from __future__ import annotations

import struct
from typing import Any, Protocol

from kernel.errors import InvalidInput

MAX_REFERENCE_BYTES = 10 * 1024 * 1024
MAX_REFERENCE_SIDE = 4096
MIN_REFERENCE_SIDE = 64
MAX_JPEG_SCANS = 64
"""Scans a reference JPEG may hold (a progressive photo has about ten). Decoding walks the whole picture once a
scan, so a small file of thousands of tiny scans took minutes of CPU and gigabytes to check."""


class ReferenceCheck(Protocol):
    def check(self, image: bytes) -> None:
        """Raise `InvalidInput` saying what is wrong with the reference; return when it is acceptable."""
        ...


class OneFaceCheck:
    """PNG or JPEG, at most 10 MiB and 4096 pixels a side, with exactly one face OpenCV's cascade finds."""

    def __init__(self) -> None:
        self._detector: Any = None

    def check(self, image: bytes) -> None:
        if not image:
            raise InvalidInput("the reference image is empty")
        if len(image) > MAX_REFERENCE_BYTES:
            raise InvalidInput(f"the reference image is {len(image)} bytes; at most {MAX_REFERENCE_BYTES} are accepted")
        width, height = image_size(image)
        if max(width, height) > MAX_REFERENCE_SIDE or min(width, height) < MIN_REFERENCE_SIDE:
            raise InvalidInput(
                f"the reference image is {width}x{height}; each side must be {MIN_REFERENCE_SIDE} to "
                f"{MAX_REFERENCE_SIDE} pixels"
            )
        from provenance.stages import decode_image

        decoded = decode_image(image)
        # The header read above is what the decoder read, or the image is refused (either way round: a photo's
        # orientation tag turns it as it is decoded).
        if sorted(decoded.shape[:2]) != sorted((height, width)):
            raise InvalidInput("the reference image's header does not describe the picture it holds")
        faces = len(self.detector().boxes(decoded))
        if faces != 1:
            raise InvalidInput(
                f"the reference image must show exactly one face, clearly and from the front; found {faces}"
            )

    def detector(self) -> Any:
        if self._detector is None:
            from moderation.likeness import FaceDetector, LikenessConfig

            self._detector = FaceDetector(LikenessConfig())
        return self._detector


def image_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a PNG or JPEG header; `InvalidInput` for anything else."""
    if data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) >= 24 and data[12:16] == b"IHDR":
        width, height = struct.unpack(">II", data[16:24])
        return int(width), int(height)
    if data.startswith(b"\xff\xd8"):
        # Entropy-coded data stuffs every 0xFF byte, so a start-of-scan marker cannot hide in it; one in an
        # embedded thumbnail counts as well, which a limit this far above real photos absorbs.
        scans = data.count(b"\xff\xda")
        if scans > MAX_JPEG_SCANS:
            raise InvalidInput(f"the reference JPEG has {scans} scans; at most {MAX_JPEG_SCANS} are decoded")
        return _jpeg_size(data)
    raise InvalidInput("the reference is not a PNG or JPEG image")


def _jpeg_size(data: bytes) -> tuple[int, int]:
    """The size in the first start-of-frame segment, read marker by marker as a JPEG decoder reads them."""
    at = 2
    while at + 4 <= len(data):
        if data[at] != 0xFF:
            break
        if data[at + 1] == 0xFF:  # a fill byte: any number may come before a marker
            at += 1
            continue
        marker = data[at + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            at += 2
            continue
        (length,) = struct.unpack(">H", data[at + 2 : at + 4])
        # Start-of-frame markers (baseline, progressive, ...) carry the size; C4, C8 and CC are not frames.
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC) and at + 9 <= len(data):
            height, width = struct.unpack(">HH", data[at + 5 : at + 9])
            return int(width), int(height)
        at += 2 + length
    raise InvalidInput("the reference JPEG has no readable frame header")
