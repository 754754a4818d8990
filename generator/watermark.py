"""The visible "AI-generated" label that moves over every frame.

Drawn by the pipeline after the backend, so every backend's output carries it. It drifts on a slow path
that depends only on time and frame size (not on the seed), so a checker can find it on any frame with
`watermark_box`. It moves because a fixed label is easy to crop or inpaint away in one place.
"""

from __future__ import annotations

import functools

import numpy as np

from generator.script import Box
from generator.text import TextOverlay, label

WATERMARK_TEXT = "AI-generated"
PLATE_ALPHA = 0.35
TEXT_ALPHA = 0.6
PERIOD_X_S = 9.0
PERIOD_Y_S = 13.0


@functools.lru_cache(maxsize=8)
def _overlay(width: int, height: int) -> TextOverlay:
    return label(WATERMARK_TEXT, width, height)


def _triangle(u: float) -> float:
    return 1.0 - abs(2.0 * (u % 1.0) - 1.0)


def watermark_box(frame_index: int, fps: int, width: int, height: int) -> Box:
    overlay = _overlay(width, height)
    w, h = min(overlay.width, width), min(overlay.height, height)
    t = frame_index / fps
    x = round(_triangle(t / PERIOD_X_S + 0.1) * (width - w))
    y = round(_triangle(t / PERIOD_Y_S + 0.35) * (height - h))
    return x, y, x + w, y + h


def watermark_mask(width: int, height: int) -> np.ndarray:
    """The label's text alpha (h, w) in 0..1, as drawn inside `watermark_box`."""
    return _overlay(width, height).text


def apply_watermark(chunk: np.ndarray, first_frame: int, fps: int) -> np.ndarray:
    """Draw the label on a chunk of uint8 frames (n, H, W, 3); returns the chunk (a copy if read-only)."""
    if not chunk.flags.writeable:
        chunk = chunk.copy()
    height, width = chunk.shape[1:3]
    overlay = _overlay(width, height)
    for offset in range(chunk.shape[0]):
        x0, y0, x1, y1 = watermark_box(first_frame + offset, fps, width, height)
        text = overlay.text[: y1 - y0, : x1 - x0, None]
        plate = overlay.plate[: y1 - y0, : x1 - x0, None]
        region = chunk[offset, y0:y1, x0:x1].astype(np.float32)
        region *= 1.0 - PLATE_ALPHA * plate
        region += (255.0 - region) * (TEXT_ALPHA * text)
        chunk[offset, y0:y1, x0:x1] = np.clip(np.rint(region), 0, 255).astype(np.uint8)
    return chunk
