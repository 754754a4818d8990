"""Shared fixtures for the moderation tests: the tiny devkit CLIP, exported once per session, and media
written on the fly (H.264 through PyAV, as the generator writes it)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from devkit.clip import development_backbone_config, synthesize_face
from moderation.backbone import Backbone, BackboneConfig, load_backbone
from moderation.config import ModeratorConfig

VideoWriter = Callable[..., Path]


def write_h264(
    path: Path,
    frames: Sequence[np.ndarray],
    *,
    fps: int = 8,
    options: dict[str, str] | None = None,
    container_options: dict[str, str] | None = None,
) -> Path:
    import av

    height, width = frames[0].shape[:2]
    with av.open(str(path), "w", options=container_options or {}) as container:
        stream: Any = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast", **(options or {})}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def with_face(frame: np.ndarray, identity: int, *, size: int = 170, at: tuple[int, int] = (20, 60)) -> np.ndarray:
    """The frame with a synthetic face pasted in at `at` (row, column)."""
    import cv2

    out = frame.copy()
    face = cv2.resize(synthesize_face(identity), (size, size), interpolation=cv2.INTER_AREA)
    row, column = at
    out[row : row + size, column : column + size] = face
    return out


def red_splatter(frame: np.ndarray, seed: int) -> np.ndarray:
    """Heavy blood-red droplets and smears over a frame: the positive class of the head-training tests."""
    import cv2

    rng = np.random.default_rng([seed, 7])
    out = frame.copy()
    height, width = out.shape[:2]
    for _ in range(int(rng.integers(20, 36))):
        centre = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        radius = int(rng.integers(max(2, width // 40), max(3, width // 8)))
        colour = (float(rng.integers(120, 200)), float(rng.integers(0, 25)), float(rng.integers(0, 25)))
        cv2.circle(out, centre, radius, colour, -1, cv2.LINE_AA)
        end = (centre[0] + int(rng.integers(-width // 6, width // 6)), centre[1] + int(rng.integers(0, height // 4)))
        cv2.line(out, centre, end, colour, max(1, radius // 3), cv2.LINE_AA)
    return out


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("moderation-cache")


@pytest.fixture(scope="session")
def dev_backbone_config(model_cache: Path) -> BackboneConfig:
    return development_backbone_config(BackboneConfig(cache_dir=model_cache, device="cpu", num_threads=1))


@pytest.fixture(scope="session")
def dev_backbone(dev_backbone_config: BackboneConfig) -> Backbone:
    return load_backbone(dev_backbone_config)


@pytest.fixture(scope="session")
def dev_config(model_cache: Path) -> ModeratorConfig:
    return ModeratorConfig(
        mode="development", backbone=BackboneConfig(cache_dir=model_cache, device="cpu", num_threads=1)
    )


@pytest.fixture
def h264() -> VideoWriter:
    """Writes frames (RGB uint8) to an H.264 mp4: h264(path, frames, fps=8, options=..., container_options=...)."""
    return write_h264


@pytest.fixture
def paste_face() -> Callable[..., np.ndarray]:
    return with_face


@pytest.fixture
def splatter() -> Callable[[np.ndarray, int], np.ndarray]:
    return red_splatter
