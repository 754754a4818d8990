"""Container sniffing from the first bytes of a file, before any decoder sees it.

Verification handles arbitrary uploads. Deciding the container from magic bytes (never from the name, and
without reading the whole file) keeps a 1 GiB file of zeros as cheap as an empty one, and lets the video
decoder be opened with the container forced and only the `file` protocol allowed: FFmpeg left to probe
on its own would happily treat a text file as an HLS playlist and fetch the URLs inside it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

_HEAD = 64


@dataclass(frozen=True, slots=True)
class Container:
    name: str
    mime: str | None
    ffmpeg_format: str | None
    """Demuxer to force when decoding; None for containers we never decode."""

    @property
    def is_video(self) -> bool:
        return self.ffmpeg_format is not None


BMFF = Container("bmff", "video/mp4", "mp4")
MATROSKA = Container("matroska", "video/webm", "matroska")
AVI = Container("avi", "video/avi", "avi")
PNG = Container("png", "image/png", None)
JPEG = Container("jpeg", "image/jpeg", None)
GIF = Container("gif", "image/gif", None)
WEBP = Container("webp", "image/webp", None)
WAV = Container("wav", "audio/wav", None)
PDF = Container("pdf", "application/pdf", None)
UNKNOWN = Container("unknown", None, None)


def sniff(path: Path) -> Container:
    """The container of `path` judged from its first 64 bytes (UNKNOWN when unreadable or unrecognised)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(_HEAD)
    except OSError:
        return UNKNOWN
    return sniff_bytes(head)


def sniff_bytes(head: bytes) -> Container:
    if len(head) >= 12 and head[4:8] == b"ftyp":
        return BMFF
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return MATROSKA
    if head.startswith(b"RIFF") and len(head) >= 12:
        return {b"AVI ": AVI, b"WEBP": WEBP, b"WAVE": WAV}.get(head[8:12], UNKNOWN)
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return PNG
    if head.startswith(b"\xff\xd8\xff"):
        return JPEG
    if head.startswith((b"GIF87a", b"GIF89a")):
        return GIF
    if head.startswith(b"%PDF-"):
        return PDF
    return UNKNOWN
