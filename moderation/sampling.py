"""Which frames of a video the classifiers look at.

Frames are taken at a steady rate (1 per second by default) plus at every scene cut, found by the distance
between colour histograms of consecutive frames, so a short shot between two samples is not skipped.
Every frame is decoded (a cut can only be seen in decoded pixels), but only samples are kept, downscaled
to a bounded size, and they come out in batches so memory stays flat on long videos.

Anything that cannot be decoded completely is refused rather than half-moderated: a file that does not
open, a stream with no frames, one that ends well before the frame count its container declares
(truncated), or a resolution beyond the configured limit.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from kernel.errors import InvalidInput, require
from kernel.paths import utf8_named
from moderation.errors import UnreadableMedia

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"})
VIDEO_SUFFIXES = frozenset({".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi"})


@dataclass(frozen=True)
class SamplingConfig:
    fps: float = 1.0
    scene_threshold: float = 0.4
    min_scene_gap_s: float = 0.25
    max_side_px: int = 4096
    max_sample_side_px: int = 1280
    max_samples: int = 2000
    batch_size: int = 32
    truncation_tolerance: float = 0.02


@dataclass(frozen=True)
class FrameSample:
    index: int
    timestamp_s: float
    image: np.ndarray
    reason: Literal["rate", "scene", "image"]


@dataclass(frozen=True)
class VideoInfo:
    path: Path
    width: int
    height: int
    fps: float
    declared_frames: int


class VideoSampler:
    """Opens and checks a video; `batches()` then yields its samples.

    `frames_read` and `duration_s` are final once `batches()` is exhausted; a truncated stream raises
    `UnreadableMedia` at that point, so a caller that scored the earlier batches makes no decision.
    """

    def __init__(self, path: Path, config: SamplingConfig | None = None) -> None:
        require("cv2", "video")
        self.config = config or SamplingConfig()
        self.info = _open_info(Path(path), self.config)
        self.frames_read = 0
        self.samples_taken = 0
        self.duration_s = 0.0

    def batches(self) -> Iterator[list[FrameSample]]:
        import cv2

        config = self.config
        with utf8_named(self.info.path) as openable:
            yield from self._batches(cv2.VideoCapture(str(openable)), config)

    def _batches(self, capture: Any, config: SamplingConfig) -> Iterator[list[FrameSample]]:
        import cv2

        if not capture.isOpened():
            raise UnreadableMedia(f"cannot open video {self.info.path.name}")
        interval = 1.0 / config.fps if config.fps > 0 else float("inf")
        next_rate_time = 0.0
        last_sample_time = -float("inf")
        previous_hist: np.ndarray | None = None
        batch: list[FrameSample] = []
        unsampled: tuple[int, float, np.ndarray] | None = None  # the last frame read, while not sampled (see below)
        index = 0

        def take(index: int, timestamp: float, frame: np.ndarray, reason: Literal["rate", "scene"]) -> None:
            if self.samples_taken >= config.max_samples:
                raise InvalidInput(
                    f"video {self.info.path.name} needs more than {config.max_samples} samples; "
                    "lower the sampling rate or raise the limit"
                )
            batch.append(FrameSample(index, timestamp, _to_rgb_sample(frame, config), reason))
            self.samples_taken += 1

        try:
            while True:
                ok, frame = capture.read()
                if not ok or frame is None:
                    break
                timestamp = index / self.info.fps
                hist = _colour_histogram(frame)
                reason: Literal["rate", "scene"] | None = None
                if timestamp + 1e-9 >= next_rate_time:
                    reason = "rate"
                    while next_rate_time <= timestamp + 1e-9:
                        next_rate_time += interval
                elif (
                    previous_hist is not None
                    and timestamp - last_sample_time >= config.min_scene_gap_s
                    and cv2.compareHist(previous_hist, hist, cv2.HISTCMP_BHATTACHARYYA) > config.scene_threshold
                ):
                    reason = "scene"
                previous_hist = hist
                unsampled = (index, timestamp, frame) if reason is None else None
                if reason is not None:
                    take(index, timestamp, frame, reason)
                    last_sample_time = timestamp
                    if len(batch) >= config.batch_size:
                        yield batch
                        batch = []
                index += 1
            # The rate covers the clip's last part-interval too: without this, a one-second clip was judged by
            # its first frame alone, whatever came after it.
            if unsampled is not None and unsampled[1] - last_sample_time >= interval / 2:
                take(*unsampled, "rate")
        finally:
            capture.release()
        self.frames_read = index
        self.duration_s = index / self.info.fps
        _check_complete(self.info, index, config)
        if batch:
            yield batch


def _open_info(path: Path, config: SamplingConfig) -> VideoInfo:
    import cv2

    if not path.is_file():
        raise InvalidInput(f"no such media file: {path}")
    with utf8_named(path) as openable:
        capture = cv2.VideoCapture(str(openable))
    try:
        if not capture.isOpened():
            raise UnreadableMedia(f"cannot open {path.name} as a video (corrupt, truncated or not a video)")
        width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
        height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        fps = float(capture.get(cv2.CAP_PROP_FPS))
        declared = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    finally:
        capture.release()
    if width <= 0 or height <= 0:
        raise UnreadableMedia(f"video {path.name} has no picture size (corrupt or no video stream)")
    if max(width, height) > config.max_side_px:
        raise InvalidInput(f"video {path.name} is {width}x{height}; the limit is {config.max_side_px} px per side")
    if not np.isfinite(fps) or fps <= 0 or fps > 1000:
        raise UnreadableMedia(f"video {path.name} declares an unusable frame rate ({fps})")
    return VideoInfo(path=path, width=width, height=height, fps=fps, declared_frames=max(declared, 0))


def _check_complete(info: VideoInfo, frames_read: int, config: SamplingConfig) -> None:
    if frames_read == 0:
        raise UnreadableMedia(f"video {info.path.name} has no decodable frames")
    expected = info.declared_frames
    if expected and frames_read < expected * (1 - config.truncation_tolerance) - 1:
        raise UnreadableMedia(
            f"video {info.path.name} is truncated or corrupt: decoded {frames_read} of {expected} frames"
        )


def _colour_histogram(frame_bgr: np.ndarray) -> np.ndarray:
    import cv2

    step = max(1, frame_bgr.shape[1] // 256)  # subsample first: area-averaging a full 4K frame costs more
    small = cv2.resize(frame_bgr[::step, ::step], (64, 36), interpolation=cv2.INTER_AREA)
    hsv = cv2.cvtColor(small, cv2.COLOR_BGR2HSV)
    hist = cv2.calcHist([hsv], [0, 1, 2], None, [8, 4, 4], [0, 180, 0, 256, 0, 256])
    return np.asarray(cv2.normalize(hist, hist).flatten(), dtype=np.float32)


def _to_rgb_sample(frame_bgr: np.ndarray, config: SamplingConfig) -> np.ndarray:
    import cv2

    height, width = frame_bgr.shape[:2]
    longest = max(height, width)
    if longest > config.max_sample_side_px:
        scale = config.max_sample_side_px / longest
        frame_bgr = cv2.resize(
            frame_bgr, (max(1, round(width * scale)), max(1, round(height * scale))), interpolation=cv2.INTER_AREA
        )
    return np.ascontiguousarray(cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB))


def load_image(path: Path, *, max_side_px: int = 4096) -> np.ndarray:
    """An image file as HxWx3 uint8 RGB; its size is checked from the header before it is decoded."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise InvalidInput(f"no such image file: {path}")
    try:
        with Image.open(path) as handle:
            width, height = handle.size
            if max(width, height) > max_side_px:
                raise InvalidInput(f"image {path.name} is {width}x{height}; the limit is {max_side_px} px per side")
            rgb: Any = handle.convert("RGB")
            return np.asarray(rgb, dtype=np.uint8).copy()
    except Image.DecompressionBombError as exc:
        raise InvalidInput(f"image {path.name} has too many pixels to decode safely") from exc
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise UnreadableMedia(f"cannot read image {path.name}: corrupt or not an image") from exc


def is_image_file(path: Path) -> bool:
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def iter_media_batches(path: Path, config: SamplingConfig | None = None) -> Iterator[list[FrameSample]]:
    """Samples of an image (one, at t=0) or a video, in batches: the training and probe input."""
    config = config or SamplingConfig()
    if is_image_file(path):
        image = load_image(path, max_side_px=config.max_side_px)
        yield [FrameSample(0, 0.0, image, "image")]
        return
    yield from VideoSampler(path, config).batches()
