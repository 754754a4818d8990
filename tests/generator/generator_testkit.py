"""Helpers shared by the generator tests: decoding files and measuring what is in them."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def decode_video_rgb(path: Path) -> np.ndarray:
    import av

    with av.open(str(path)) as container:
        return np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])


def decode_audio(path: Path) -> tuple[np.ndarray, int]:
    """Decoded samples (channels, n) placed by their timestamps, and the sample rate."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        rate = stream.sample_rate
        pieces: list[tuple[int, np.ndarray]] = []
        for frame in container.decode(audio=0):
            if frame.pts is None or frame.time_base is None:
                raise AssertionError("decoded audio frame without a timestamp")
            start = round(float(frame.pts * frame.time_base) * rate)
            pieces.append((start, frame.to_ndarray()))
    total = max(start + block.shape[1] for start, block in pieces)
    out = np.zeros((pieces[0][1].shape[0], total), dtype=np.float32)
    for start, block in pieces:
        if start < 0:
            block, start = block[:, -start:], 0
        out[:, start : start + block.shape[1]] = block
    return out, rate


def top_level_boxes(path: Path) -> list[str]:
    boxes = []
    with open(path, "rb") as handle:
        while header := handle.read(8):
            size = int.from_bytes(header[:4], "big")
            kind = header[4:8].decode("latin-1")
            if size == 1:
                size = int.from_bytes(handle.read(8), "big")
                handle.seek(size - 16, 1)
            elif size == 0:
                boxes.append(kind)
                break
            else:
                handle.seek(size - 8, 1)
            boxes.append(kind)
    return boxes


def envelope(signal: np.ndarray, rate: int, window_s: float = 0.001) -> np.ndarray:
    hop = max(1, round(window_s * rate))
    usable = signal[: signal.size // hop * hop].reshape(-1, hop)
    return np.sqrt(np.mean(usable.astype(np.float64) ** 2, axis=1))


def high_pass(signal: np.ndarray, rate: int, cutoff_hz: float) -> np.ndarray:
    spectrum = np.fft.rfft(signal)
    spectrum[np.fft.rfftfreq(signal.size, 1.0 / rate) < cutoff_hz] = 0
    return np.fft.irfft(spectrum, n=signal.size)


def onsets(env: np.ndarray, window_s: float, threshold: float, quiet_s: float = 0.005) -> list[float]:
    """Times where the envelope crosses `threshold` after `quiet_s` below half of it (ignoring the 3 windows of
    the rise itself)."""
    lead, guard = max(1, round(quiet_s / window_s)), 3
    found: list[float] = []
    for index in range(len(env)):
        if env[index] > threshold and (index == 0 or env[index - 1] <= threshold):
            before = env[max(0, index - guard - lead) : max(0, index - guard)]
            if before.size == 0 or before.max() < threshold / 2:
                found.append(index * window_s)
    return found


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    x = a.astype(np.float64).ravel() - a.mean()
    y = b.astype(np.float64).ravel() - b.mean()
    return float(x @ y / max(np.sqrt((x @ x) * (y @ y)), 1e-9))


def pattern_image(height: int, width: int, variant: int) -> np.ndarray:
    """A distinctive, low-frequency test likeness (survives H.264): coloured checks plus a diagonal ramp."""
    yy, xx = np.mgrid[0:height, 0:width]
    cells = ((yy * 4 // height) + (xx * 4 // width) + variant) % 2
    image = np.zeros((height, width, 3), dtype=np.uint8)
    image[..., 0] = np.where(cells, 230, 20)
    image[..., 1] = ((xx + yy) * 255 // (width + height)).astype(np.uint8)
    image[..., 2] = np.where(cells, 30, 210) if variant % 2 == 0 else np.where(cells, 200, 60)
    return image
