"""Helpers shared by the credentials tests: re-encoding, byte surgery on MP4 boxes, a fake status lookup."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any
from uuid import UUID

from provenance.credentials.manifest import CameoUse, ClassifierRecord, ManifestInputs


def manifest_inputs(video_id: UUID, remix_of: UUID | None = None) -> ManifestInputs:
    return ManifestInputs(
        video_id=video_id,
        generator_name="toy-generator",
        generator_version="0.3.1",
        event_ids=(f"{video_id}:1", f"{video_id}:2", f"{video_id}:3"),
        moderation_verdict="allow",
        classifiers=(ClassifierRecord("policy-clip", "1.2", "ab" * 32), ClassifierRecord("likeness", "0.9", "cd" * 32)),
        cameos=(CameoUse("cameo-7f3a", "grant-19c2"),),
        development_model=True,
        generator_model_sha256="ef" * 32,
        remix_of=remix_of,
    )


def reencode(source: Path, target: Path, *, crf: int = 23, scale: float = 1.0, codec: str = "libx264") -> Path:
    """Decode and re-encode the video only (what a platform upload pipeline does): the manifest is lost."""
    import av

    container_format = "webm" if codec == "libvpx" else "mp4"
    with av.open(str(source)) as src, av.open(str(target), "w", format=container_format) as dst:
        stream = src.streams.video[0]
        width = int(stream.codec_context.width * scale) // 2 * 2
        height = int(stream.codec_context.height * scale) // 2 * 2
        out = dst.add_stream(codec, rate=stream.average_rate)
        assert isinstance(out, av.VideoStream)
        out.width, out.height, out.pix_fmt = width, height, "yuv420p"
        out.options = {"crf": str(crf)} if codec == "libx264" else {"crf": "10", "b:v": "1M"}
        for frame in src.decode(stream):
            if scale != 1.0:
                frame = frame.reformat(width=width, height=height, format="yuv420p", interpolation="BILINEAR")
            dst.mux(out.encode(frame))
        dst.mux(out.encode(None))
    return target


def splice(target: Path, *parts: tuple[Path | None, int | None], crf: int = 18) -> Path:
    """One H.264 file of the first `count` frames (None: all) of each `(source, count)` in turn; a source of None
    is `count` mid-grey frames (an intro). Every source must have the first real one's size and rate."""
    import av
    import numpy as np

    with av.open(str(next(p for p, _ in parts if p is not None))) as first:
        model = first.streams.video[0]
        width, height, rate = model.width, model.height, model.average_rate
    with av.open(str(target), "w", format="mp4") as dst:
        out = dst.add_stream("libx264", rate=rate)
        assert isinstance(out, av.VideoStream)
        out.width, out.height, out.pix_fmt, out.options = width, height, "yuv420p", {"crf": str(crf)}
        for source, count in parts:
            if source is None:
                planes = [np.full((height * 3 // 2, width), 128, np.uint8)] * (count or 0)
            else:
                with av.open(str(source)) as src:
                    planes = [f.to_ndarray(format="yuv420p") for f in src.decode(video=0)][:count]
            for plane in planes:
                dst.mux(out.encode(av.VideoFrame.from_ndarray(plane, format="yuv420p")))
        dst.mux(out.encode(None))
    return target


def top_level_boxes(data: bytes) -> list[tuple[int, int, bytes]]:
    """(offset, size, type) of each top-level ISO BMFF box."""
    boxes, offset = [], 0
    while offset + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[offset : offset + 8])
        if size == 1:
            size = struct.unpack(">Q", data[offset + 8 : offset + 16])[0]
        elif size == 0:
            size = len(data) - offset
        boxes.append((offset, size, kind))
        offset += size
    return boxes


def flip_media_byte(data: bytes, into: int = 400) -> bytes:
    """Flip one byte inside the mdat payload (the coded video), leaving every box intact."""
    offset, size, _ = next(b for b in top_level_boxes(data) if b[2] == b"mdat")
    assert size > into + 16
    tampered = bytearray(data)
    tampered[offset + into] ^= 0xFF
    return bytes(tampered)


def blank_manifest_box(data: bytes) -> bytes:
    """Replace the C2PA `uuid` box by a `free` box of the same size: manifest gone, media bytes unchanged."""
    offset, size, _ = next(b for b in top_level_boxes(data) if b[2] == b"uuid")
    return data[:offset] + struct.pack(">I4s", size, b"free") + bytes(size - 8) + data[offset + size :]


class FakeStatusLookup:
    """What the projections would answer: the status of known videos and their soft bindings."""

    def __init__(self) -> None:
        self.statuses: dict[UUID, dict[str, Any]] = {}
        self.bindings: dict[tuple[str, str], UUID] = {}

    def add(self, video_id: UUID, binding: tuple[str, str], status: dict[str, Any]) -> None:
        self.statuses[video_id] = status
        self.bindings[binding] = video_id

    def status(self, video_id: UUID) -> dict[str, Any] | None:
        return self.statuses.get(video_id)

    def resolve_soft_binding(self, alg: str, value: str) -> UUID | None:
        return self.bindings.get((alg, value))
