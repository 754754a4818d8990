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
  sampled from the first seconds, Viterbi-decodes, and checks the CRC. A wrong message passes the CRC
  with probability 2**-32, so an unmarked video returns None.

Parameters were chosen from measurement (WATERMARK.md, bench/bench_watermark.py). The key is not a
secret: the mark resists ordinary processing, not a determined adversary who knows the method.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import os
import tempfile
import time
import zlib
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import UUID

import numpy as np

from kernel.paths import is_utf8_named
from provenance.credentials.errors import WatermarkError
from provenance.credentials.formats import sniff

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
    """Frames decoded for the vote."""
    scan_frames: int = 120
    """The vote looks at the first this-many frames only, so a long file costs no more than a short one."""


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
    """The 96 message bits (payload and CRC) the Viterbi decoder chose."""
    frames: int
    payload: bytes | None

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


def _open_input(path: Path) -> av.container.InputContainer:
    """Open a local video with its container forced from its magic bytes and only `file:` allowed."""
    import av

    if not path.is_file():
        raise WatermarkError(f"no such video file: {path}")
    container = sniff(path)
    if container.ffmpeg_format is None:
        raise WatermarkError(f"{path.name} is not in a video container this decoder reads (mp4, webm, avi)")
    try:
        return av.open(str(path), "r", format=container.ffmpeg_format, options={"protocol_whitelist": "file"})
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise WatermarkError(f"{path.name} is not a readable video ({_one_line(exc)})") from exc


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
"""FFmpeg options OpenCV reads at every open; the protocol white list keeps a capture to local files."""

_CAPTURE_LOG_LEVEL = "OPENCV_FFMPEG_LOGLEVEL"
"""FFmpeg's log level for OpenCV's captures, read at every open. Quiet unless set: a damaged file is reported
in the verification report, not by a hundred lines of decoder complaints on stderr."""
_QUIET = "-8"  # AV_LOG_QUIET


def _sampled_lumas(path: Path, config: WatermarkConfig) -> Generator[np.ndarray, None, None]:
    """Luma planes of up to `sample_frames` frames spread over the first `scan_frames` frames.

    Read through OpenCV, which the canonical resize needs anyway, so verifying a file does not also load
    PyAV (most of a small file's verification time was importing the two). A pixel format whose luma
    OpenCV cannot hand back as it is, or a file it cannot open, is read through PyAV, which also says what
    is wrong with a file that cannot be decoded at all.
    """
    capture = _luma_capture(path)
    if capture is None:
        yield from _sampled_lumas_pyav(path, config)
        return
    import cv2

    try:
        every = _sampling_stride(int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0), config)
        width, height = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        taken = 0
        for index in range(config.scan_frames):
            if taken >= config.sample_frames:
                break
            if index % every:
                if not capture.grab():
                    break
                continue
            ok, frame = _quietly(capture.read)
            if not ok or frame is None or frame.shape != (height, width) or frame.dtype != np.uint8:
                break
            taken += 1
            yield frame
    finally:
        capture.release()
    if taken == 0:  # nothing came out this way: PyAV reads it or says why it cannot
        yield from _sampled_lumas_pyav(path, config)


def _luma_capture(path: Path) -> Any:
    """An OpenCV capture that hands back undecorated luma planes, or None when this file needs PyAV."""
    import cv2

    if not path.is_file() or sniff(path).ffmpeg_format is None or not is_utf8_named(path):
        return None  # PyAV opens a name that is not UTF-8, where OpenCV would crash
    options = os.environ.get(_CAPTURE_OPTIONS, "")
    if "protocol_whitelist" not in options:
        os.environ[_CAPTURE_OPTIONS] = "|".join(filter(None, (options, "protocol_whitelist;file")))
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


def _sampling_stride(total: int, config: WatermarkConfig) -> int:
    """Every how-many frames one is sampled, given the stream's frame count (0 when unknown)."""
    span = min(total, config.scan_frames) if total else config.scan_frames
    return max(1, span // max(1, config.sample_frames))


def _sampled_lumas_pyav(path: Path, config: WatermarkConfig) -> Iterator[np.ndarray]:
    import av

    container = _open_input(path)
    try:
        if not container.streams.video:
            raise WatermarkError(f"{path.name} has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        total = stream.frames or 0
        if not total and stream.duration and stream.time_base and stream.average_rate:
            total = int(stream.duration * stream.time_base * stream.average_rate)
        every = _sampling_stride(total, config)
        taken = 0
        for index, frame in enumerate(container.decode(stream)):
            if index >= config.scan_frames or taken >= config.sample_frames:
                break
            if index % every:
                continue
            taken += 1
            yield _luma(frame)
    except av.FFmpegError as exc:
        raise WatermarkError(f"{path.name} could not be decoded ({_one_line(exc)})") from exc
    finally:
        container.close()


def _luma(frame: Any) -> np.ndarray:
    """A decoded frame's luma plane (as 4:2:0 lays it out; a frame of odd width, which 4:2:0 cannot hold, as
    grey)."""
    if frame.width % 2 == 0:
        luma: np.ndarray = frame.to_ndarray(format="yuv420p")[: frame.height]
        return luma
    grey: np.ndarray = frame.to_ndarray(format="gray")
    return grey


EARLY_VOTES = (3, 8)
"""Sampled frame counts after which the vote is already tried: a copy that kept its mark decodes from a few
frames, and the CRC makes an early wrong answer as unlikely as a late one (2**-32 a try)."""


def read_watermark(video: Path, config: WatermarkConfig = DEFAULT_CONFIG) -> WatermarkReading:
    """Vote over sampled frames; `payload` is set only when the CRC checks.

    The vote is tried after `EARLY_VOTES` frames and stops at the first that checks; otherwise it takes every
    sampled frame, as a copy that lost most of its mark needs.
    """
    chip_rows: list[np.ndarray] = []
    with contextlib.closing(_sampled_lumas(Path(video), config)) as lumas:
        for luma in lumas:
            chip_rows.append(read_luma(luma, config))
            if len(chip_rows) in EARLY_VOTES and (reading := _vote(chip_rows, config)).payload is not None:
                return reading
    if not chip_rows:
        return WatermarkReading(soft=np.zeros(0), message=np.zeros(0, np.uint8), frames=0, payload=None)
    return _vote(chip_rows, config)


def _vote(chip_rows: list[np.ndarray], config: WatermarkConfig) -> WatermarkReading:
    soft = vote(np.stack(chip_rows), config)
    message, payload = decode_soft(soft, config)
    return WatermarkReading(soft=soft, message=message, frames=len(chip_rows), payload=payload)


def decode_watermark(video: Path, config: WatermarkConfig = DEFAULT_CONFIG) -> bytes | None:
    """The payload marked in `video`, or None when it carries no readable mark.

    Raises WatermarkError when the file cannot be decoded as a video at all.
    """
    return read_watermark(video, config).payload
