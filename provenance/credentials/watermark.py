"""Invisible watermark that outlives the C2PA manifest.

Re-encoding a video strips its manifest, so every frame also carries a 64-bit payload derived from the
video id (the C2PA soft binding). The method is dither-modulated quantisation (QIM) of low-frequency DCT
coefficients measured on a coarse grid of cells laid over the frame in relative coordinates:

* the luma plane is resized (area average) to a small canonical image, one 8x8 block per cell, so the same
  coefficients are measured at any resolution: a resize to half reads back unchanged, and the coarse,
  low-frequency pattern is what H.264 keeps best;
* the payload and a keyed CRC-32 are convolutionally coded (rate 1/2, K=7); each chosen coefficient of
  each block is one chip, and a keyed permutation spreads the coded bits over the chips;
* embedding moves each coefficient to the nearest point of its bit's lattice (with a keyed dither); the
  change is computed on the canonical grid and upsampled smoothly onto the frame, with refinement passes
  so the decoder measures the value intended;
* decoding soft-votes (the cosine of the lattice phase, so uncertain chips count for little) over frames
  sampled in windows spread over the whole clip, each window on its own, Viterbi-decodes, and checks the
  CRC; every distinct payload that checks is kept (a clip spliced from several marked videos has several).
  A wrong message passes the CRC with probability 2**-32, so an unmarked video has none.

Parameters were chosen from measurement (WATERMARK.md, bench/bench_watermark.py). The key is not a
secret: the mark resists ordinary processing, not a determined adversary who knows the method.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import io
import itertools
import os
import tempfile
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import UUID

import numpy as np

from kernel.paths import is_utf8_named
from provenance.credentials.errors import WatermarkError
from provenance.credentials.formats import BMFF, sniff

if TYPE_CHECKING:
    import av.container

ALG = "org.provenance.watermark.dctqim.v1"
"""Soft-binding algorithm name recorded in the `c2pa.soft-binding` assertion: an entity-specific name in the
form the C2PA soft-binding algorithm list requires (reverse domain, letters, digits and dots only)."""

FORMER_ALGS = ("org.provenance.watermark.dct-qim.v1",)
"""Names the same algorithm was recorded under before; a look-up by binding matches them too."""


def binding_keys(alg: str, value: str) -> list[str]:
    """The `alg:value` keys a binding is stored under: the current name's, and the former names' for ours."""
    names = [alg, *FORMER_ALGS] if alg in (ALG, *FORMER_ALGS) else [alg]
    return [f"{name}:{value}" for name in dict.fromkeys(names)]


PAYLOAD_BITS = 64
PAYLOAD_BYTES = PAYLOAD_BITS // 8
CRC_BITS = 32
MESSAGE_BITS = PAYLOAD_BITS + CRC_BITS
_CONSTRAINT = 7
_POLYNOMIALS = (0o133, 0o171)
CODED_BITS = (MESSAGE_BITS + _CONSTRAINT - 1) * len(_POLYNOMIALS)
_BLOCK = 8
_SOFT_BINDING_DOMAIN = b"org.provenance.soft-binding/v1\x00"
_ZIGZAG_10 = ((0, 0), (0, 1), (1, 0), (2, 0), (1, 1), (0, 2), (0, 3), (1, 2), (2, 1), (3, 0))


@dataclass(frozen=True, slots=True)
class WatermarkConfig:
    """Where and how strongly the mark is written, and how much of a file is read back."""

    grid_short: int = 4
    """Cells across the short side of the frame (the grid follows the orientation)."""
    grid_long: int = 6
    coefficients: tuple[tuple[int, int], ...] = _ZIGZAG_10
    step: float = 6.0
    """QIM step in orthonormal-DCT units of the canonical 8x8 block (bigger: more robust, more visible)."""
    key: bytes = b"org.provenance.watermark/v1"
    refine_passes: int = 1
    crf: int = 18
    preset: str = "medium"
    sample_frames: int = 24
    """Frames decoded for the votes, in all windows together."""
    windows: int = 4
    """Stretches of the clip, spread from its first frame to its last, each voted on its own: a clip spliced from
    several marked videos shows each one's payload, and an intro before the marked frames hides nothing."""
    scan_frames: int = 120
    """The windows together span this-many frames at most (each a quarter), so a long file costs no more sampled
    frames than a short one."""


DEFAULT_CONFIG = WatermarkConfig()


@dataclass(frozen=True, slots=True)
class WatermarkReport:
    """What `embed_watermark` did: the payload, how many frames, and the distortion it cost."""

    payload_hex: str
    frames: int
    width: int
    height: int
    psnr_db: float
    """Luma PSNR of the marked frames against the decoded input frames, before the output encode."""
    audio_copied: bool
    seconds: float


@dataclass(frozen=True, slots=True)
class WatermarkReading:
    """The decoder's evidence: voted soft values of the coded bits, the decoded message, the payload."""

    soft: np.ndarray = field(repr=False)
    """Per coded bit, the mean soft chip value in [-1, 1] (positive: bit 0)."""
    message: np.ndarray = field(repr=False)
    """The 96 message bits (payload and CRC) the Viterbi decoder chose (of the vote that found the first payload)."""
    frames: int
    """Frames read, in all windows."""
    payloads: tuple[bytes, ...]
    """Every distinct payload whose CRC checks, first found first (several: a clip spliced from marked videos)."""

    @property
    def payload(self) -> bytes | None:
        """The first payload found, or None."""
        return self.payloads[0] if self.payloads else None

    @property
    def confidence(self) -> float:
        return float(np.mean(np.abs(self.soft))) if self.soft.size else 0.0


def soft_binding_for(video_id: UUID) -> tuple[str, str]:
    """The (alg, value) soft binding of a video: the watermark payload in base64, as the C2PA
    soft-binding resolution API carries values."""
    return ALG, soft_binding_value(payload_for(video_id))


def soft_binding_value(payload: bytes) -> str:
    return base64.b64encode(payload).decode("ascii")


def payload_for(video_id: UUID) -> bytes:
    """64 bits derived from the video id; the resolution index maps them back to the video."""
    return hashlib.sha256(_SOFT_BINDING_DOMAIN + video_id.bytes).digest()[:PAYLOAD_BYTES]


def payload_from_value(value: str) -> bytes | None:
    """The payload encoded in a soft-binding value, or None when the value is not one of ours."""
    try:
        payload = base64.b64decode(value, validate=True)
    except (ValueError, binascii.Error):
        return None
    return payload if len(payload) == PAYLOAD_BYTES else None


def message_bits(payload: bytes, key: bytes = DEFAULT_CONFIG.key) -> np.ndarray:
    """Payload bits followed by a keyed CRC-32 of them (big-endian bit order)."""
    if len(payload) != PAYLOAD_BYTES:
        raise WatermarkError(f"a watermark payload is {PAYLOAD_BYTES} bytes, got {len(payload)}")
    crc = zlib.crc32(key + payload).to_bytes(4, "big")
    return np.unpackbits(np.frombuffer(payload + crc, dtype=np.uint8))


def _payload_if_valid(message: np.ndarray, key: bytes) -> bytes | None:
    raw = np.packbits(message.astype(np.uint8)).tobytes()
    payload, crc = raw[:PAYLOAD_BYTES], raw[PAYLOAD_BYTES:]
    return payload if zlib.crc32(key + payload).to_bytes(4, "big") == crc else None


class _ConvolutionalCode:
    """Rate-1/2, constraint-length-7 code (the 133/171 pair), zero-terminated, soft-decision Viterbi.

    Worth about 5 dB over spreading the bare message over the same chips: at the chip error rates of a
    CRF 28 re-encode the voted message still has a few wrong bits, which the code corrects.
    """

    def __init__(self) -> None:
        registers = np.arange(1 << _CONSTRAINT)
        self.outputs = np.array(
            [[bin(int(r) & g).count("1") & 1 for g in _POLYNOMIALS] for r in registers], dtype=np.uint8
        )
        self.signs = 1.0 - 2.0 * self.outputs
        self.states = 1 << (_CONSTRAINT - 1)

    def encode(self, message: np.ndarray) -> np.ndarray:
        state, out = 0, []
        for bit in [*message.tolist(), *([0] * (_CONSTRAINT - 1))]:
            register = (state << 1) | int(bit)
            out.extend(self.outputs[register].tolist())
            state = register & (self.states - 1)
        return np.array(out, dtype=np.uint8)

    def decode(self, soft: np.ndarray) -> np.ndarray:
        """Most likely message given per-coded-bit soft values (positive: bit 0)."""
        width = len(_POLYNOMIALS)
        steps = len(soft) // width
        previous = np.arange(1 << _CONSTRAINT) >> 1
        metric = np.full(self.states, -np.inf)
        metric[0] = 0.0
        back = np.zeros((steps, self.states), dtype=np.int64)
        low, high = np.arange(self.states), np.arange(self.states) + self.states
        for t in range(steps):
            candidates = metric[previous] + self.signs @ soft[t * width : (t + 1) * width]
            take_high = candidates[self.states :] > candidates[: self.states]
            metric = np.where(take_high, candidates[self.states :], candidates[: self.states])
            back[t] = np.where(take_high, high, low)
        state, bits = 0, []
        for t in range(steps - 1, -1, -1):
            register = int(back[t, state])
            bits.append(register & 1)
            state = register >> 1
        return np.array(bits[::-1][: steps - (_CONSTRAINT - 1)], dtype=np.uint8)


_CODE = _ConvolutionalCode()


def coded_bits(payload: bytes, key: bytes = DEFAULT_CONFIG.key) -> np.ndarray:
    """The bits the chips carry: the convolutionally coded payload and CRC."""
    return _CODE.encode(message_bits(payload, key))


class _Layout:
    """Keyed chip layout: which coefficient carries which coded bit, with which dither."""

    def __init__(self, config: WatermarkConfig) -> None:
        self.config = config
        cells = config.grid_short * config.grid_long
        self.n_chips = cells * len(config.coefficients)
        if self.n_chips < CODED_BITS:
            raise WatermarkError(f"the watermark grid has {self.n_chips} chips, fewer than the {CODED_BITS} coded bits")
        if any(not (0 <= r < _BLOCK and 0 <= c < _BLOCK) for r, c in config.coefficients):
            raise WatermarkError("watermark coefficients must index an 8x8 block")
        seed = int.from_bytes(hashlib.sha256(config.key + b"/layout").digest()[:8], "big")
        rng = np.random.default_rng(seed)
        order = rng.permutation(self.n_chips)
        # Chip i carries coded bit bit_of[i]; every bit gets floor or ceil of n_chips / CODED_BITS chips.
        self.bit_of = np.empty(self.n_chips, dtype=np.int64)
        self.bit_of[order] = np.arange(self.n_chips) % CODED_BITS
        self.dither = rng.uniform(0.0, config.step, size=self.n_chips)
        self.rows = np.array([r for r, _ in config.coefficients])
        self.cols = np.array([c for _, c in config.coefficients])
        n = np.arange(_BLOCK)
        dct = np.cos(np.pi * (2 * n[None, :] + 1) * n[:, None] / (2 * _BLOCK)) * np.sqrt(2.0 / _BLOCK)
        dct[0, :] = np.sqrt(1.0 / _BLOCK)
        self.dct = dct
        # Canonical image in portrait orientation: grid_short blocks across, grid_long down.
        self.canonical_size = (config.grid_short * _BLOCK, config.grid_long * _BLOCK)

    def coefficients_of(self, canonical: np.ndarray) -> np.ndarray:
        """The chip coefficients of a canonical image, flattened in chip order (cell-major)."""
        rows, cols = self.config.grid_long, self.config.grid_short
        blocks = canonical.reshape(rows, _BLOCK, cols, _BLOCK).transpose(0, 2, 1, 3)
        spectrum = self.dct @ blocks @ self.dct.T
        return spectrum[:, :, self.rows, self.cols].reshape(-1)

    def image_of(self, chip_values: np.ndarray) -> np.ndarray:
        """The canonical image whose chip coefficients are `chip_values` and all others zero."""
        rows, cols = self.config.grid_long, self.config.grid_short
        spectrum = np.zeros((rows, cols, _BLOCK, _BLOCK))
        spectrum[:, :, self.rows, self.cols] = chip_values.reshape(rows, cols, -1)
        blocks = self.dct.T @ spectrum @ self.dct
        return blocks.transpose(0, 2, 1, 3).reshape(rows * _BLOCK, cols * _BLOCK)

    def targets(self, measured: np.ndarray, chips: np.ndarray) -> np.ndarray:
        """Nearest point of each chip's bit lattice: dither + bit*step + 2*step*Z."""
        step = self.config.step
        offset = self.dither + chips * step
        return offset + 2 * step * np.round((measured - offset) / (2 * step))

    def soft(self, measured: np.ndarray) -> np.ndarray:
        """+1 on the lattice of bit 0, -1 on that of bit 1, near 0 half-way."""
        return np.cos(np.pi * (measured - self.dither) / self.config.step)


_LAYOUTS: dict[WatermarkConfig, _Layout] = {}


def _layout(config: WatermarkConfig) -> _Layout:
    layout = _LAYOUTS.get(config)
    if layout is None:
        layout = _LAYOUTS[config] = _Layout(config)
    return layout


def _portrait(luma: np.ndarray) -> np.ndarray:
    """The grid is laid out on the frame's own orientation: landscape frames are read transposed."""
    return luma.T if luma.shape[1] > luma.shape[0] else luma


def _canonical(luma: np.ndarray, layout: _Layout) -> np.ndarray:
    import cv2

    return cv2.resize(_portrait(luma), layout.canonical_size, interpolation=cv2.INTER_AREA).astype(np.float64)


class FrameMarker:
    """Marks luma planes with one payload (the layout and chip values are computed once per video)."""

    def __init__(self, payload: bytes, config: WatermarkConfig = DEFAULT_CONFIG) -> None:
        self.config = config
        self.layout = _layout(config)
        self.chips = coded_bits(payload, config.key)[self.layout.bit_of]

    def mark(self, luma: np.ndarray) -> np.ndarray:
        """A marked copy of one uint8 luma plane."""
        import cv2

        layout = self.layout
        plane = _portrait(luma)
        height, width = plane.shape
        base = _canonical(plane, layout)
        measured = layout.coefficients_of(base)
        target = layout.targets(measured, self.chips)
        canonical_change = np.zeros_like(base)
        full_change: np.ndarray = np.zeros(plane.shape, np.float32)
        passes = 1 + max(0, self.config.refine_passes)
        for index in range(passes):
            canonical_change += layout.image_of(target - measured)
            full_change = cv2.resize(
                canonical_change.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR
            )
            if index + 1 < passes:
                # Area resizing is linear, so the decoder will measure base + (the change, resized back).
                measured = layout.coefficients_of(base + _canonical(full_change, layout))
        result = np.clip(np.rint(plane + full_change), 0, 255).astype(np.uint8)
        return result.T if plane is not luma else result


def read_luma(luma: np.ndarray, config: WatermarkConfig = DEFAULT_CONFIG) -> np.ndarray:
    """Soft chip values of one luma plane (any resolution), in chip order."""
    layout = _layout(config)
    return layout.soft(layout.coefficients_of(_canonical(luma, layout)))


def vote(chip_soft: np.ndarray, config: WatermarkConfig = DEFAULT_CONFIG) -> np.ndarray:
    """Mean soft value per coded bit from chip soft values of one or more frames (frames x chips)."""
    layout = _layout(config)
    frames = np.atleast_2d(chip_soft)
    sums = np.bincount(layout.bit_of, weights=frames.sum(axis=0), minlength=CODED_BITS)
    counts = np.bincount(layout.bit_of, minlength=CODED_BITS) * frames.shape[0]
    return sums / counts


def decode_soft(soft: np.ndarray, config: WatermarkConfig = DEFAULT_CONFIG) -> tuple[np.ndarray, bytes | None]:
    """Viterbi-decode voted soft values; the payload is returned only when the CRC checks."""
    message = _CODE.decode(soft)
    return message, _payload_if_valid(message, config.key)


_PROBE_BYTES = 1 << 18
"""Packet bytes FFmpeg reads at most, when it opens a file, to learn its streams' parameters (5 MB unless told).
It holds every packet it reads until then, a few hundred bytes each besides the payload, so a stream of one-byte
packets that never decode cost hundreds of MiB at every open; a few frames of an ordinary clip fit."""


def _open_input(path: Path) -> av.container.InputContainer:
    """Open a local video with its container forced from its magic bytes and only `file:` allowed."""
    import av

    if not path.is_file():
        raise WatermarkError(f"no such video file: {path}")
    container = sniff(path)
    if container.ffmpeg_format is None:
        raise WatermarkError(f"{path.name} is not in a video container this decoder reads (mp4, webm, avi)")
    try:
        options = {"protocol_whitelist": "file", "probesize": str(_PROBE_BYTES)}
        return av.open(str(path), "r", format=container.ffmpeg_format, options=options)
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise WatermarkError(f"{path.name} is not a readable video ({_one_line(exc)})") from exc


COUNTED_PACKETS = 100_000
"""Video packets counted at most for a clip's length (over an hour at 24 fps): the count costs a Python step a
packet, and a file of tiny packets (Matroska laces hundreds of one-byte frames into one block) holds millions to
the megabyte. A clip that reaches it is read as this long."""


def _count_frames(path: Path, index: int = 0) -> int:
    """The frames of a clip whose container does not say how many (Matroska written as a stream has neither a
    duration nor an index): the packets of its video stream `index`, read without decoding them, up to
    `COUNTED_PACKETS`; as many as were read before a damaged packet stopped the reading."""
    import av

    count = 0
    with contextlib.closing(_open_input(path)) as container:
        if len(container.streams.video) <= index:
            return 0
        try:
            for packet in container.demux(container.streams.video[index]):
                count += packet.size > 0
                if count >= COUNTED_PACKETS:
                    break
        except av.FFmpegError:
            pass
    return count


_BOXES_SCANNED = 10_000
"""Boxes looked at, at most, to read an MP4's layout from their headers; a file of more is opened by PyAV instead
(and its frames counted)."""


_WALKED_BYTES = 16 << 20
"""The largest MP4 whose layout is read from its box headers; a larger one is opened by FFmpeg (whose start-up
costs little beside decoding such a file)."""


def _mp4_layout(path: Path) -> tuple[int, bool] | None:
    """(video tracks, fragmented) of a small MP4, from its box headers alone, so that verifying one does not load
    PyAV; None (ask FFmpeg) whenever the headers do not settle it, failing closed.

    Its video tracks are the `trak`s in its one `moov` whose `mdia/hdlr` handler is `vide`. FFmpeg parses a box
    wherever it sits and takes the last handler in a track, and it takes a track of any handler but sound for
    video when its sample entry names a video codec: so the walk settles the count only where the file holds no
    `trak` or `moov` type code but those walked, each track no `hdlr` code but its own, and every handler is
    `vide` or `soun`. It is fragmented (its sample tables then list only the frames before the first fragment,
    and more may play after them) when `moof` or `mvex` appears anywhere in it. Also None past `_BOXES_SCANNED`
    boxes.
    """
    if path.stat().st_size > _WALKED_BYTES:
        return None
    data = path.read_bytes()
    scanned = 0

    def boxes(handle: Any, start: int, end: int, kind: bytes | None = None) -> list[tuple[bytes, int, int]]:
        nonlocal scanned
        found = []
        for box in _boxes(handle, start, end):
            scanned += 1
            if scanned > _BOXES_SCANNED:
                raise OverflowError
            found.append(box)
        return [box for box in found if kind is None or box[0] == kind]

    handlers: list[bytes] = []
    handle = io.BytesIO(data)
    try:
        movies = boxes(handle, 0, len(data), b"moov")
        if len(movies) != 1 or data.count(b"moov") != 1:
            return None
        _, body, end = movies[0]
        tracks = boxes(handle, body, end, b"trak")
        if data.count(b"trak") != len(tracks):
            return None
        for _, track, track_end in tracks:
            found = [
                (handler, handler_end)
                for _, media, media_end in boxes(handle, track, track_end, b"mdia")
                for _, handler, handler_end in boxes(handle, media, media_end, b"hdlr")
            ]
            if len(found) != 1 or data.count(b"hdlr", track, track_end) != 1 or found[0][1] - found[0][0] < 12:
                return None
            handlers.append(data[found[0][0] + 8 : found[0][0] + 12])  # after its version, flags and pre_defined
    except OverflowError:
        return None
    if not handlers or not set(handlers) <= {b"vide", b"soun"}:
        return None
    return handlers.count(b"vide"), b"moof" in data or b"mvex" in data


def _boxes(handle: Any, offset: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """(type, where its body starts, where it ends) of each box from `offset` to `end`, read header by header;
    the walk stops at a box whose size cannot be."""
    import struct

    while offset + 8 <= end:
        handle.seek(offset)
        header = handle.read(16)
        size, kind = struct.unpack(">I4s", header[:8])
        body = offset + 8
        if size == 1 and len(header) == 16:
            size, body = struct.unpack(">Q", header[8:])[0], offset + 16
        elif size == 0:
            size = end - offset
        if size < body - offset:
            return
        yield kind, body, min(offset + size, end)
        offset += size


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def embed_watermark(
    input_video: Path,
    output_video: Path,
    payload: bytes,
    config: WatermarkConfig = DEFAULT_CONFIG,
) -> WatermarkReport:
    """Re-encode `input_video` to `output_video` (H.264, audio copied, faststart) with `payload` marked.

    The output appears only when complete: it is written to a temporary file beside it and renamed.
    """
    import av

    started = time.perf_counter()
    message_bits(payload, config.key)  # validates the payload before any work
    input_video, output_video = Path(input_video), Path(output_video)
    source = _open_input(input_video)
    tmp: Path | None = None
    try:
        if not source.streams.video:
            raise WatermarkError(f"{input_video.name} has no video stream")
        in_video = source.streams.video[0]
        in_video.thread_type = "AUTO"
        in_audio = source.streams.audio[0] if source.streams.audio else None
        width, height = in_video.codec_context.width, in_video.codec_context.height
        if width % 2 or height % 2 or width < 16 or height < 16:
            raise WatermarkError(f"{input_video.name} is {width}x{height}: H.264 output needs even sizes >= 16")
        output_video.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{output_video.stem}-", suffix=".mp4", dir=output_video.parent)
        os.close(fd)
        tmp = Path(name)
        frames, squared_error, audio_copied = _transcode_marked(
            source, in_video, in_audio, tmp, payload, config, width, height
        )
        if frames == 0:
            raise WatermarkError(f"{input_video.name} has no decodable video frames")
        os.replace(tmp, output_video)
        tmp = None
    except av.FFmpegError as exc:
        raise WatermarkError(f"could not re-encode {input_video.name}: {_one_line(exc)}") from exc
    finally:
        source.close()
        if tmp is not None:
            tmp.unlink(missing_ok=True)
    mse = squared_error / (frames * width * height)
    psnr = float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)
    return WatermarkReport(
        payload_hex=payload.hex(),
        frames=frames,
        width=width,
        height=height,
        psnr_db=float(psnr),
        audio_copied=audio_copied,
        seconds=time.perf_counter() - started,
    )


def _transcode_marked(
    source: av.container.InputContainer,
    in_video: Any,
    in_audio: Any,
    target: Path,
    payload: bytes,
    config: WatermarkConfig,
    width: int,
    height: int,
) -> tuple[int, float, bool]:
    import av

    frames = 0
    squared_error = 0.0
    marker = FrameMarker(payload, config)
    with av.open(str(target), "w", format="mp4", options={"movflags": "+faststart"}) as sink:
        rate = in_video.average_rate or in_video.guessed_rate or 24
        out_video = sink.add_stream("libx264", rate=rate)
        out_video.width, out_video.height = width, height
        out_video.pix_fmt = "yuv420p"
        out_video.options = {"crf": str(config.crf), "preset": config.preset}
        out_audio = sink.add_stream_from_template(in_audio) if in_audio is not None else None
        wanted = [s for s in (in_video, in_audio) if s is not None]
        for packet in source.demux(*wanted):
            if packet.stream is in_video:
                for frame in packet.decode():
                    planes = frame.to_ndarray(format="yuv420p")
                    luma = planes[:height]
                    marked = marker.mark(luma)
                    squared_error += float(np.sum((marked.astype(np.float64) - luma) ** 2))
                    planes[:height] = marked
                    out_frame = av.VideoFrame.from_ndarray(planes, format="yuv420p")
                    out_frame.pts, out_frame.time_base = frame.pts, frame.time_base
                    sink.mux(out_video.encode(out_frame))
                    frames += 1
            elif out_audio is not None and packet.dts is not None:
                packet.stream = out_audio
                sink.mux(packet)
        sink.mux(out_video.encode(None))
    return frames, squared_error, out_audio is not None


_LUMA_FIRST = frozenset({"I420", "J420"})
"""Planar 8-bit 4:2:0 (what software H.264 decoders produce), whose first plane is the luma: what OpenCV hands
back of a frame it does not convert (`CAP_PROP_CONVERT_RGB` off) is then exactly the decoded luma plane."""

_CAPTURE_OPTIONS = "OPENCV_FFMPEG_CAPTURE_OPTIONS"
"""FFmpeg options OpenCV reads at every open; the protocol white list keeps a capture to local files, and the probe
size bounds what an open costs (see `_PROBE_BYTES`)."""

_CAPTURE_LOG_LEVEL = "OPENCV_FFMPEG_LOGLEVEL"
"""FFmpeg's log level for OpenCV's captures, read at every open. Quiet unless set: a damaged file is reported
in the verification report, not by a hundred lines of decoder complaints on stderr."""
_QUIET = "-8"  # AV_LOG_QUIET


_SEEK_FROM = 2 * DEFAULT_CONFIG.scan_frames
"""Frames a clip must exceed before its windows are reached by seeking: a shorter clip (10 s at 24 fps) is decoded
from its start, every window at its exact frames. A longer one is read through PyAV, each window from a keyframe near
its target, so its cost does not grow with the clip."""


def _sample_plan(total: int, config: WatermarkConfig) -> list[range]:
    """The frames each window samples: `windows` stretches spread from the clip's first frame to its last, each
    `scan_frames // windows` frames long (shorter in a clip of fewer than `scan_frames`), `sample_frames` frames
    in all. The count does not grow with the clip; an unknown length (0) is read as `scan_frames` frames (the
    reader counts a clip's frames when its container does not say, see `read_watermark`)."""
    windows = max(1, config.windows)
    length = total if total > 0 else config.scan_frames
    per_window = max(1, config.sample_frames // windows)
    span = max(1, min(length, config.scan_frames) // windows)
    stride = max(1, span // per_window)
    last = max(0, length - span)
    starts = sorted({round(i * last / (windows - 1)) for i in range(windows)}) if windows > 1 else [0]
    return [range(start, min(start + span, length), stride)[:per_window] for start in starts]


class _OpenCvFrames:
    """Luma planes of chosen frames (in increasing order) through an OpenCV capture."""

    def __init__(self, capture: Any) -> None:
        import cv2

        self.capture = capture
        self.total = max(0, int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0))
        self.shape = (int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)), int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)))
        self.position = 0
        """The index of the frame the next read decodes."""
        self.last: tuple[int, np.ndarray] | None = None

    def luma_at(self, index: int) -> np.ndarray | None:
        """The luma plane of frame `index`, or None past the end (or where the stream stops decoding)."""
        if self.last is not None and self.last[0] == index:
            return self.last[1]
        while self.position < index:
            if not self.capture.grab():
                return None
            self.position += 1
        ok, frame = _quietly(self.capture.read)
        self.position += 1
        if not ok or frame is None or frame.shape != self.shape or frame.dtype != np.uint8:
            return None
        luma: np.ndarray = frame
        self.last = (index, luma)
        return luma

    def window(self, frames: range, limit: int) -> range:
        """The frames to read for a window planned at `frames`: those very frames (this reader decodes forward
        from the start; OpenCV's own seek decodes from the keyframe before its target, so it would save nothing)."""
        return frames

    def close(self) -> None:
        self.capture.release()


def _opencv_frames(path: Path) -> _OpenCvFrames | None:
    """Frames read through OpenCV, which the canonical resize needs anyway, so verifying a file does not also
    load PyAV (most of a small file's verification time was importing the two); None when this file needs PyAV."""
    capture = _luma_capture(path)
    return _OpenCvFrames(capture) if capture is not None else None


def _luma_capture(path: Path) -> Any:
    """An OpenCV capture that hands back undecorated luma planes, or None when this file needs PyAV."""
    import cv2

    if not path.is_file() or sniff(path).ffmpeg_format is None or not is_utf8_named(path):
        return None  # PyAV opens a name that is not UTF-8, where OpenCV would crash
    options = os.environ.get(_CAPTURE_OPTIONS, "")
    if "protocol_whitelist" not in options:
        options = os.environ[_CAPTURE_OPTIONS] = "|".join(filter(None, (options, "protocol_whitelist;file")))
    if "probesize" not in options:
        os.environ[_CAPTURE_OPTIONS] = f"{options}|probesize;{_PROBE_BYTES}"
    os.environ.setdefault(_CAPTURE_LOG_LEVEL, _QUIET)
    capture = _quietly(lambda: cv2.VideoCapture(str(path), cv2.CAP_FFMPEG, [cv2.CAP_PROP_CONVERT_RGB, 0]))
    if capture.isOpened() and _pixel_format(capture) in _LUMA_FIRST:
        return capture
    capture.release()
    return None


def _pixel_format(capture: Any) -> str:
    """The FourCC of the pixel format the capture decodes to; "" when OpenCV does not know it (it says -1 for a
    stream it could not make sense of, such as one whose media offsets a transplanted manifest box shifted)."""
    import cv2

    code = int(capture.get(cv2.CAP_PROP_CODEC_PIXEL_FORMAT))
    return code.to_bytes(4, "little").decode("latin-1") if 0 <= code < 1 << 32 else ""


def _quietly(call: Any) -> Any:
    """OpenCV warns on stderr that it hands back frames unconverted: that is what is asked of it here."""
    from cv2.utils import logging as cv_logging

    level = cv_logging.getLogLevel()
    cv_logging.setLogLevel(cv_logging.LOG_LEVEL_ERROR)
    try:
        return call()
    finally:
        cv_logging.setLogLevel(level)


_BAD_PACKETS = 64
"""Packets in a row that fail to decode after which a stream counts as ended: a damaged packet is skipped, but a
stream of nothing else is not decoded to its end."""


class _PyAvFrames:
    """Luma planes of chosen frames (in increasing order) through PyAV: any pixel format, and it says what is
    wrong with a file that cannot be decoded at all. With `seek`, a window far ahead is reached by seeking to a
    keyframe near it (found in the container's index), whose frames it then reads instead of its exact ones."""

    def __init__(self, path: Path, seek: bool = False, index: int = 0) -> None:
        self.path = path
        self.container = _open_input(path)
        if len(self.container.streams.video) <= index:
            self.container.close()
            raise WatermarkError(f"{path.name} has no video stream" + (f" {index}" if index else ""))
        self.stream = stream = self.container.streams.video[index]
        stream.thread_type = "AUTO"
        self.rate = stream.average_rate or stream.guessed_rate
        total = stream.frames or 0
        if not total and stream.duration and stream.time_base and self.rate:
            total = int(stream.duration * stream.time_base * self.rate)
        self.total = total
        self.seek = bool(seek and self.rate and stream.time_base)
        self.frames_decoded = 0
        """Frames decoded so far, from wherever the reader started or seeked to."""
        self.decoded = self._decode()
        self.position: int | None = 0
        """The index of the frame the decoder yields next; None just after a seek, until a frame says where."""
        self.pending: tuple[int, Any] | None = None
        """A frame decoded to learn where a seek landed, not yet handed out."""

    def _decode(self) -> Iterator[Any]:
        """The stream's frames, decoded packet by packet: a packet that does not decode is skipped, as a player
        skips it, so one damaged packet hides neither the frames before it nor those after. The stream counts as
        ended after `_BAD_PACKETS` in a row, or where the container itself cannot be read further; a stream none
        of whose packets decodes raises WatermarkError, saying why."""
        import av

        bad = 0
        failure: av.FFmpegError | None = None
        packets = self.container.demux(self.stream)
        while bad < _BAD_PACKETS:
            try:
                packet = next(packets, None)
            except av.FFmpegError as exc:
                failure = exc
                break
            if packet is None:
                break
            try:
                frames = packet.decode()
            except av.FFmpegError as exc:
                bad, failure = bad + 1, exc
                continue
            bad = 0
            for frame in frames:
                self.frames_decoded += 1
                yield frame
        if failure is not None and not self.frames_decoded:
            raise WatermarkError(f"{self.path.name} could not be decoded ({_one_line(failure)})") from failure

    def _start(self) -> int:
        return int(self.stream.start_time or 0)

    def _timestamp(self, index: float) -> int:
        """The stream timestamp of frame `index`."""
        assert self.rate and self.stream.time_base
        return self._start() + int(index / (self.rate * self.stream.time_base))

    def _frame_at(self, timestamp: int) -> int:
        assert self.rate and self.stream.time_base
        return round((timestamp - self._start()) * self.stream.time_base * self.rate)

    def _index_of(self, frame: Any) -> int | None:
        if frame.time is None or not self.rate:
            return None
        base, first = self.stream.time_base, self.stream.start_time
        start = float(first * base) if first and base else 0.0
        return round((frame.time - start) * float(self.rate))

    def window(self, frames: range, limit: int) -> range:
        """The frames to read for a window planned at `frames` (the reader has read up to here, forward): those
        very frames when they are near; else those at the same offsets from a keyframe not yet read, the one at or
        before the window's first frame, or the first after it up to frame `limit`; else (no keyframe near) those
        that follow on from where the reader is. A window so costs its own few frames, however long the clip."""
        if not self.seek or not frames:
            return frames
        position = self.position if self.position is not None else 0
        target = frames.start
        span = len(frames) * frames.step
        if target - position <= span:  # a short way: decoded through
            start = max(target, position)
            return range(start, start + span, frames.step)
        keyframe = self._keyframe_near(target, position, limit)
        if keyframe is None:
            return range(position, position + span, frames.step)
        import av

        try:
            self.container.seek(keyframe, stream=self.stream, backward=True, any_frame=False)
            self.decoded, self.position = self._decode(), None
            landed = next(self.decoded, None)
        except av.FFmpegError as exc:
            raise WatermarkError(f"{self.path.name} could not be decoded ({_one_line(exc)})") from exc
        if landed is None:
            return range(0)
        at = self._index_of(landed)
        at = target if at is None else at
        self.pending, self.position = (at, landed), at + 1
        start = max(at, position)
        return range(start, start + span, frames.step)

    def _keyframe_near(self, target: int, position: int, limit: int) -> int | None:
        """A timestamp to seek to that lands on a keyframe past `position`: the one at or before frame `target`,
        else the first after it up to frame `limit`; None when the index names none (or there is no index)."""
        entries = self.stream.index_entries
        if not len(entries):
            return self._timestamp(target) if target > position else None  # no index: where a seek lands
        found = entries.search_timestamp(self._timestamp(target), backward=True, any_frame=False)
        if found < 0 or self._frame_at(entries[found].timestamp) < position:
            found = entries.search_timestamp(self._timestamp(target) + 1, backward=False, any_frame=False)
            if found < 0 or self._frame_at(entries[found].timestamp) > limit:
                return None
        # The index may hold decoding times, a little before the frame's own: seek half-way to the next keyframe,
        # which a backward seek by presentation time resolves to this one.
        timestamp = int(entries[found].timestamp)
        after = entries.search_timestamp(timestamp + 1, backward=False, any_frame=False)
        step = int(1 / (self.rate * self.stream.time_base)) if self.rate and self.stream.time_base else 1
        ahead = (int(entries[after].timestamp) - timestamp) // 2 if after >= 0 else 8 * step
        return timestamp + max(0, min(ahead, 8 * step))

    def luma_at(self, index: int) -> np.ndarray | None:
        """The luma plane of frame `index` (or of the first frame after it the decoder yields), or None past the
        end."""
        import av

        try:
            if self.pending is not None:
                landed, frame = self.pending
                self.pending = None
                if landed >= index:
                    return _luma(frame)
            for frame in self.decoded:
                at = self.position if self.position is not None else self._index_of(frame)
                at = index if at is None else at  # a frame without a time: take it as the one sought
                self.position = at + 1
                if at >= index:
                    return _luma(frame)
            return None
        except av.FFmpegError as exc:
            raise WatermarkError(f"{self.path.name} could not be decoded ({_one_line(exc)})") from exc

    def close(self) -> None:
        self.container.close()


def _luma(frame: Any) -> np.ndarray:
    """A decoded frame's luma plane (as 4:2:0 lays it out; a frame of odd width, which 4:2:0 cannot hold, as
    grey)."""
    if frame.width % 2 == 0:
        luma: np.ndarray = frame.to_ndarray(format="yuv420p")[: frame.height]
        return luma
    grey: np.ndarray = frame.to_ndarray(format="gray")
    return grey


EARLY_VOTES = (3, 8)
"""Sampled frame counts within a window after which its vote is already tried (it is always tried at the window's
end): a copy that kept its mark decodes from a few frames, and the CRC makes an early wrong answer as unlikely as a
late one (2**-32 a try)."""


MAX_VIDEO_STREAMS = 4
"""Video streams read at most in one file; a file of more is not verified (WatermarkError), not taken as clean."""


def read_watermark(video: Path, config: WatermarkConfig = DEFAULT_CONFIG) -> WatermarkReading:
    """Vote window by window over frames sampled across the whole clip; `payloads` holds every payload whose CRC
    checks, first found first: one for a marked video, several for a clip spliced from several marked videos.

    Each window's vote is tried after `EARLY_VOTES` frames and stops that window at the first that checks. When no
    window finds a payload on its own, every sampled frame is voted together, as a copy that lost most of its mark
    needs.

    Every video stream is read, the first first: a player may show any of them (FFmpeg's tools and mpv pick the one
    marked default), so a second stream hides nothing. Raises WatermarkError when no stream yields a payload and
    one could not be decoded, or when the file has more than `MAX_VIDEO_STREAMS`.
    """
    path = Path(video)
    # Only an MP4's sample tables list its frames. Any other container's length is a duration the file states,
    # true or not (or none, as Matroska written as a stream), and what plays after it would hide from windows
    # spread over that length: such a clip's frames are counted. A fragmented MP4's sample tables list only the
    # frames before its first fragment.
    layout = _mp4_layout(path) if path.is_file() and sniff(path) == BMFF else None
    if layout is None:
        with contextlib.closing(_open_input(path)) as container:
            streams, listed = len(container.streams.video), False
    else:
        streams, listed = layout[0], not layout[1]
    if streams > MAX_VIDEO_STREAMS:
        raise WatermarkError(f"{path.name} has {streams} video streams, too many to verify")
    readings: list[WatermarkReading] = []
    failure: WatermarkError | None = None
    for stream in range(max(1, streams)):  # none: the reader says that the file has no video stream
        try:
            readings.append(_read_stream(path, stream, listed, config))
        except WatermarkError as exc:
            failure = failure or exc
    found = [reading for reading in readings if reading.payloads]
    if failure is not None and not found:
        raise failure
    frames = sum(reading.frames for reading in readings)
    if not found:
        return replace(readings[0], frames=frames)
    payloads = tuple(dict.fromkeys(payload for reading in found for payload in reading.payloads))
    return replace(found[0], frames=frames, payloads=payloads)


def _read_stream(path: Path, stream: int, listed: bool, config: WatermarkConfig) -> WatermarkReading:
    """`read_watermark` of one video stream (its index among the video streams), whose frames the container lists
    when `listed`. OpenCV reads only the first; any other is read through PyAV."""
    counted = None if listed else _count_frames(path, stream)
    frames: _OpenCvFrames | _PyAvFrames | None = _opencv_frames(path) if stream == 0 else None
    if frames is not None:
        frames.total = frames.total if counted is None else counted
        if not 0 < frames.total <= _SEEK_FROM or frames.luma_at(0) is None:
            # A long clip is read through PyAV, which seeks to keyframes; where nothing came out, PyAV says why.
            frames.close()
            frames = None
    if frames is None:
        frames = _PyAvFrames(path, seek=True, index=stream)
        frames.total = counted if counted is not None else frames.total or _count_frames(path, stream)
        frames.seek = frames.seek and frames.total > _SEEK_FROM
    rows: list[np.ndarray] = []
    found: list[WatermarkReading] = []
    failure: WatermarkError | None = None
    try:
        plan = _sample_plan(frames.total, config)
        limits = [(a.start + b.start) // 2 for a, b in itertools.pairwise(plan)] + [max(frames.total, 1) - 1]
        for planned, limit in zip(plan, limits, strict=True):
            window_rows: list[np.ndarray] = []
            ended = False
            checked = False
            for index in frames.window(planned, limit):
                luma = frames.luma_at(index)
                if luma is None and isinstance(frames, _OpenCvFrames) and index < frames.total:
                    # OpenCV stops at a packet it cannot decode; PyAV skips it and reads on from the same frame.
                    total = frames.total
                    frames.close()
                    frames = _PyAvFrames(path)
                    frames.total = total
                    luma = frames.luma_at(index)
                if luma is None:
                    ended = True
                    break
                window_rows.append(read_luma(luma, config))
                checked = len(window_rows) in EARLY_VOTES
                if checked and (reading := _vote(window_rows, config)).payloads:
                    found.append(reading)
                    break
            else:
                if window_rows and not checked and (reading := _vote(window_rows, config)).payloads:
                    found.append(reading)
            if ended and window_rows and not checked and (reading := _vote(window_rows, config)).payloads:
                found.append(reading)
            rows += window_rows
            if ended:
                break
    except WatermarkError as exc:
        # The file stopped decoding part-way: what was already found stands, and only a file that yields no
        # payload at all is reported as one that could not be decoded.
        failure = exc
    finally:
        frames.close()
    together = _vote(rows, config) if rows and not found else None  # every sampled frame, as no window decoded
    if failure is not None and not found and not (together and together.payloads):
        raise failure
    if not rows:
        return WatermarkReading(soft=np.zeros(0), message=np.zeros(0, np.uint8), frames=0, payloads=())
    if together is not None:
        return replace(together, frames=len(rows))
    payloads = tuple(dict.fromkeys(reading.payloads[0] for reading in found))
    return replace(found[0], frames=len(rows), payloads=payloads)


def _vote(chip_rows: list[np.ndarray], config: WatermarkConfig) -> WatermarkReading:
    soft = vote(np.stack(chip_rows), config)
    message, payload = decode_soft(soft, config)
    return WatermarkReading(soft=soft, message=message, frames=len(chip_rows), payloads=(payload,) if payload else ())


def decode_watermarks(video: Path, config: WatermarkConfig = DEFAULT_CONFIG) -> tuple[bytes, ...]:
    """Every payload marked in `video`, first found first: none when it carries no readable mark, more than one
    when it was spliced from several marked videos.

    Raises WatermarkError when the file cannot be decoded as a video at all.
    """
    return read_watermark(video, config).payloads


def decode_watermark(video: Path, config: WatermarkConfig = DEFAULT_CONFIG) -> bytes | None:
    """The first payload found in `video` (see `decode_watermarks` for all of them), or None when it carries no
    readable mark.

    Raises WatermarkError when the file cannot be decoded as a video at all.
    """
    return read_watermark(video, config).payload
