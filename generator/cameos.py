"""Cameos in the picture: where and when each reference likeness appears, and its compositing.

Cameos appear one after another in equal time slots between 10% and 90% of the clip, in the order of
their ids, each at about 0.3 of the frame width (never below 64 px, unless the reference is so tall that
it would not fit the frame's height; then it is scaled down to fit) and never outside the frame or over the
caption. Each drifts on a seeded path while visible and is blended in with a soft elliptical mask. The plan
is pure numpy and does not depend on the device; only the blend runs in torch.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from generator.script import Box, CameoAppearance

if TYPE_CHECKING:
    import torch

CAMEO_WIDTH_FRACTION = 0.3
MIN_CAMEO_WIDTH = 64
FEATHER = 0.12
"""Width of the mask's soft edge, as a fraction of the ellipse's radius."""


@dataclass(frozen=True, slots=True)
class CameoLayer:
    appearance: CameoAppearance
    image: np.ndarray
    """float32 (h, w, 3) in 0..1, already resized to the box size."""
    mask: np.ndarray
    """float32 (h, w, 1) in 0..1: 1 inside the ellipse, fading to 0 at its edge."""


def cameo_size(image_shape: tuple[int, ...], width: int, height: int, top: int) -> tuple[int, int]:
    box_w = min(width, max(MIN_CAMEO_WIDTH, round(CAMEO_WIDTH_FRACTION * width)))
    ref_h, ref_w = image_shape[:2]
    box_h = max(1, round(box_w * ref_h / ref_w))
    room = height - top
    if box_h > room:
        box_w = max(1, round(box_w * room / box_h))
        box_h = room
    return box_w, box_h


def elliptical_mask(box_w: int, box_h: int) -> np.ndarray:
    u = (np.arange(box_w, dtype=np.float32) + 0.5) / box_w * 2.0 - 1.0
    v = (np.arange(box_h, dtype=np.float32) + 0.5) / box_h * 2.0 - 1.0
    radius = np.sqrt(u[None, :] ** 2 + v[:, None] ** 2)
    return np.clip((1.0 - radius) / FEATHER, 0.0, 1.0)[:, :, None].astype(np.float32)


def _slots(count: int, frame_count: int) -> list[tuple[int, int]]:
    start = math.floor(0.1 * frame_count)
    stop = max(start + count, math.ceil(0.9 * frame_count))
    stop = min(stop, frame_count)
    length = stop - start
    return [(start + i * length // count, start + (i + 1) * length // count - 1) for i in range(count)]


def _path(
    rng: np.random.Generator, frames: int, box_w: int, box_h: int, width: int, height: int, top: int
) -> list[Box]:
    x_max, y_min, y_max = width - box_w, top, height - box_h
    a = np.array([rng.uniform(0, x_max), rng.uniform(y_min, y_max)])
    b = np.array([rng.uniform(0, x_max), rng.uniform(y_min, y_max)])
    phase = rng.uniform(0, 2 * math.pi)
    wobble = 0.04 * width
    boxes: list[Box] = []
    for step in range(frames):
        u = step / max(1, frames - 1)
        ease = u * u * (3.0 - 2.0 * u)
        x, y = a + (b - a) * ease
        x += wobble * math.sin(2 * math.pi * 1.5 * u + phase)
        y += wobble * math.cos(2 * math.pi * 1.1 * u + phase)
        x0 = int(min(max(round(x), 0), x_max))
        y0 = int(min(max(round(y), y_min), y_max))
        boxes.append((x0, y0, x0 + box_w, y0 + box_h))
    return boxes


def plan_cameos(
    cameos: Mapping[str, np.ndarray], seed: int, width: int, height: int, fps: int, frame_count: int, top: int = 0
) -> list[CameoLayer]:
    """`top` keeps cameos below a caption; it is ignored where the frame has no room below it."""
    import cv2

    if not cameos:
        return []
    layers: list[CameoLayer] = []
    ids = sorted(cameos)
    for (first, last), cameo_id in zip(_slots(len(ids), frame_count), ids, strict=True):
        image = cameos[cameo_id]
        box_w, box_h = cameo_size(image.shape, width, height, top)
        room_top = top if height - top >= box_h else 0
        id_seed = int.from_bytes(hashlib.sha256(cameo_id.encode()).digest()[:8], "big")
        rng = np.random.default_rng([seed, 0xCA, id_seed])
        boxes = _path(rng, last - first + 1, box_w, box_h, width, height, room_top)
        resized = cv2.resize(image, (box_w, box_h), interpolation=cv2.INTER_AREA)
        appearance = CameoAppearance(cameo_id, first, last, tuple(boxes), fps)
        layers.append(CameoLayer(appearance, resized.astype(np.float32) / 255.0, elliptical_mask(box_w, box_h)))
    return layers


class CameoCompositor:
    """Blends planned cameos into uint8 frames (T, H, W, 3) on the frames' device, in place."""

    def __init__(self, layers: list[CameoLayer], device: torch.device) -> None:
        import torch

        self._layers = [
            (
                layer.appearance,
                torch.from_numpy(layer.image * 255.0).to(device),
                torch.from_numpy(layer.mask).to(device),
            )
            for layer in layers
        ]

    def apply(self, frames: torch.Tensor, first_frame: int) -> None:
        import torch

        count = frames.shape[0]
        for appearance, image, mask in self._layers:
            lo = max(first_frame, appearance.first_frame)
            hi = min(first_frame + count - 1, appearance.last_frame)
            for frame in range(lo, hi + 1):
                box = appearance.box_at(frame)
                assert box is not None
                x0, y0, x1, y1 = box
                region = frames[frame - first_frame, y0:y1, x0:x1, :]
                blended = region.float() * (1.0 - mask) + image * mask
                region.copy_(blended.round_().clamp_(0, 255).to(torch.uint8))
