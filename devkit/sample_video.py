"""Synthetic H.264 clips with an AAC track, for tests, benchmarks and demos of the credentials step.

The picture is a textured background that pans and zooms, with shapes moving over it, so an encoder sees
motion and detail as in generated video (a flat or static picture would flatter the watermark). `noise`
adds fresh random grain to every frame, which is how the benchmarks make files of a wanted size.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True, slots=True)
class SampleClip:
    width: int = 160
    height: int = 288
    seconds: float = 1.5
    fps: int = 24
    audio: bool = True
    seed: int = 0
    noise: float = 0.0
    """Standard deviation of per-frame grain, in 8-bit levels."""
    motion: float = 1.0
    """Scale of the camera pan and zoom (0: a still background; shapes always move)."""
    crf: int = 18
    preset: str = "veryfast"


def _texture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    import cv2

    texture = np.zeros((height, width, 3), np.float32)
    for scale, weight in ((64, 90.0), (16, 45.0), (4, 20.0)):
        small = rng.normal(size=(max(2, height // scale), max(2, width // scale), 3)).astype(np.float32)
        texture += weight * cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
    return texture


def render_frames(clip: SampleClip) -> Iterator[np.ndarray]:
    """RGB uint8 frames of the clip, one at a time (a long clip need not fit in memory)."""
    import cv2

    rng = np.random.default_rng(clip.seed)
    width, height = clip.width, clip.height
    pad = max(width, height) // 4
    background = _texture(rng, height + 2 * pad, width + 2 * pad) + 128.0
    colours = rng.uniform(40, 220, size=(3, 3))
    count = max(1, round(clip.seconds * clip.fps))
    for index in range(count):
        t = index / max(1, count - 1)
        dx = int(pad * clip.motion * np.sin(2 * np.pi * t))
        dy = int(pad * 0.5 * clip.motion * t)
        zoom = 1.0 + 0.08 * clip.motion * t
        top, left = pad + dy - pad // 2, pad + dx
        window = background[top : top + height, left : left + width]
        view = np.ascontiguousarray(cv2.resize(window, None, fx=zoom, fy=zoom)[:height, :width], np.float32)
        for k, colour in enumerate(colours):
            cx = int((0.2 + 0.6 * ((t + k / 3) % 1.0)) * width)
            cy = int((0.25 + 0.25 * k + 0.05 * np.sin(4 * t + k)) * height)
            cv2.circle(view, (cx, cy), max(4, width // 10), tuple(float(c) for c in colour), -1, cv2.LINE_AA)
        if clip.noise:
            view += rng.normal(0.0, clip.noise, size=view.shape).astype(np.float32)
        yield np.clip(view, 0, 255).astype(np.uint8)


def write_sample_video(path: Path, clip: SampleClip = SampleClip()) -> Path:
    """Encode the clip to an MP4 at `path` (written to a temporary file, then renamed)."""
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=".mp4", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        with av.open(str(tmp), "w", format="mp4", options={"movflags": "+faststart"}) as container:
            video = container.add_stream("libx264", rate=clip.fps)
            video.width, video.height, video.pix_fmt = clip.width, clip.height, "yuv420p"
            video.options = {"crf": str(clip.crf), "preset": clip.preset}
            audio = container.add_stream("aac", rate=44100) if clip.audio else None
            if audio is not None:
                audio.layout = "mono"
            for frame in render_frames(clip):
                container.mux(video.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
            container.mux(video.encode(None))
            if audio is not None:
                _write_tone(container, audio, clip.seconds)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _write_tone(container: object, audio: object, seconds: float) -> None:
    import av

    rate, chunk = 44100, 1024
    total = int(seconds * rate)
    for start in range(0, total, chunk):
        n = min(chunk, total - start)
        t = (start + np.arange(n)) / rate
        samples = (0.2 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)[None, :]
        frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
        frame.sample_rate, frame.pts = rate, start
        container.mux(audio.encode(frame))  # type: ignore[attr-defined]
    container.mux(audio.encode(None))  # type: ignore[attr-defined]
