"""Local stand-ins for the development mode and the tests: a tiny CLIP and synthetic pictures.

No CLIP weights can be fetched here, so development runs on a tiny open_clip configuration
(`model_configs/provenance-devkit-tiny.json`) with random weights drawn from a fixed seed. The checkpoint is
written as a safetensors file and loaded through exactly the same path as a real checkpoint, so the export,
cache and scoring code are the production code. The file carries a marker that makes every decision taken
with it say `development_model: true`, and that production mode refuses.

The synthetic faces are drawn so that OpenCV's Haar frontal-face cascade finds them (eye sockets darker
than cheeks, a lit nose bridge, dark brows), with an identity number that changes skin tone, face shape,
hair, eye spacing and features, so the likeness matcher can be tested end to end without photographs.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

from moderation.backbone import (
    DEVKIT_METADATA_KEY,
    DEVKIT_MODEL_NAME,
    BackboneConfig,
    default_cache_dir,
    register_model_configs,
)

DEVKIT_VERSION = 1

_SKIN_TONES = (
    (255, 224, 196),
    (241, 194, 155),
    (224, 172, 130),
    (198, 134, 92),
    (161, 102, 62),
    (120, 75, 45),
    (92, 58, 36),
)
_HAIR_COLOURS = (
    (20, 16, 14),
    (60, 38, 24),
    (110, 72, 40),
    (196, 160, 90),
    (150, 60, 30),
    (160, 160, 160),
    (230, 210, 150),
)
_EYE_COLOURS = ((60, 40, 20), (40, 80, 140), (50, 110, 60), (90, 70, 40))


def build_devkit_checkpoint(directory: Path | None = None, *, seed: int = 0) -> Path:
    """Writes (once) the tiny random CLIP checkpoint and returns its path.

    The torch global random state is forked, so building the checkpoint does not disturb a caller's
    seeded run, and the same seed gives the same file (and model hash) with the same torch version.
    """
    import open_clip
    import torch
    from safetensors.torch import save_file

    folder = Path(directory) if directory is not None else default_cache_dir() / "devkit"
    path = folder / f"{DEVKIT_MODEL_NAME}-v{DEVKIT_VERSION}-seed{seed}.safetensors"
    if path.is_file():
        return path
    register_model_configs()
    folder.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = open_clip.create_model(DEVKIT_MODEL_NAME, pretrained=None, pretrained_text=False)
    state = {name: tensor.detach().contiguous() for name, tensor in model.state_dict().items()}
    metadata = {DEVKIT_METADATA_KEY: str(DEVKIT_VERSION), "seed": str(seed), "model_name": DEVKIT_MODEL_NAME}
    handle, temp_name = tempfile.mkstemp(prefix=".devkit-", suffix=".safetensors", dir=folder)
    os.close(handle)
    try:
        save_file(state, temp_name, metadata=metadata)
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    return path


def development_backbone_config(base: BackboneConfig | None = None, *, seed: int = 0) -> BackboneConfig:
    """The given config (or the default one) pointed at the tiny devkit checkpoint."""
    config = base or BackboneConfig()
    weights = build_devkit_checkpoint(Path(config.cache_dir) / "devkit", seed=seed)
    return replace(config, model_name=DEVKIT_MODEL_NAME, weights=weights)


def synthesize_face(identity: int, size: int = 256) -> np.ndarray:
    """A frontal face (HxWx3 uint8 RGB) whose looks are fixed by `identity`."""
    import cv2

    rng = np.random.default_rng([identity, 0x5EED])
    s = size / 256.0
    skin = np.clip(np.array(_SKIN_TONES[rng.integers(len(_SKIN_TONES))], float) * rng.uniform(0.93, 1.05), 0, 255)
    hair = np.array(_HAIR_COLOURS[rng.integers(len(_HAIR_COLOURS))], float)
    eye_colour = np.array(_EYE_COLOURS[rng.integers(len(_EYE_COLOURS))], float)
    background = rng.uniform(60, 200, 3)
    img = np.empty((size, size, 3), np.float32)
    img[:] = background
    cx = size / 2 + rng.uniform(-4, 4) * s
    cy = size * 0.53
    fw = 66 * s * rng.uniform(0.88, 1.05)
    fh = 86 * s * rng.uniform(0.95, 1.05)
    long_hair = rng.random() < 0.4
    spacing = 27 * s * rng.uniform(0.85, 1.15)
    nose_length = 30 * s * rng.uniform(0.85, 1.15)
    mouth_width = 20 * s * rng.uniform(0.8, 1.2)

    def colour(value: np.ndarray | tuple[float, ...]) -> tuple[float, ...]:
        return tuple(float(v) for v in np.asarray(value, float))

    def ellipse(
        centre: tuple[float, float],
        axes: tuple[float, float],
        fill: np.ndarray | tuple[float, ...],
        *,
        angle: float = 0,
        start: int = 0,
        end: int = 360,
        thickness: int = -1,
    ) -> None:
        cv2.ellipse(
            img,
            (round(centre[0]), round(centre[1])),
            (max(1, round(axes[0])), max(1, round(axes[1]))),
            angle,
            start,
            end,
            colour(fill),
            thickness,
            cv2.LINE_AA,
        )

    def px(value: float) -> int:
        return max(1, round(value))

    # Neck and the hair behind the head.
    cv2.rectangle(img, (int(cx - fw * 0.45), int(cy + fh * 0.6)), (int(cx + fw * 0.45), size), colour(skin * 0.8), -1)
    if long_hair:
        cv2.rectangle(
            img, (int(cx - fw * 1.2), int(cy - fh * 0.4)), (int(cx + fw * 1.2), int(cy + fh * 1.1)), colour(hair), -1
        )
    ellipse((cx, cy - fh * 0.2), (fw * 1.18, fh * 1.0), hair)

    # Face oval, darker towards its rim.
    face = np.zeros((size, size), np.float32)
    cv2.ellipse(face, (int(cx), int(cy)), (int(fw), int(fh)), 0, 0, 360, 1.0, -1, cv2.LINE_AA)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    rim = np.sqrt(((xx - cx) / fw) ** 2 + ((yy - cy) / fh) ** 2)
    shade = 1.0 - 0.25 * np.clip(rim, 0, 1) ** 3
    for k in range(3):
        img[..., k] = img[..., k] * (1 - face) + face * skin[k] * shade

    # Forehead, cheekbones and nose bridge catch the light (more so on dark skin, as the cascade needs).
    light = np.zeros((size, size), np.float32)
    for hx, hy, ax, ay in (
        (0, -0.45, 0.55, 0.22),
        (-0.45, 0.12, 0.22, 0.16),
        (0.45, 0.12, 0.22, 0.16),
        (0, 0, 0.1, 0.3),
    ):
        cv2.ellipse(light, (int(cx + hx * fw), int(cy + hy * fh)), (int(ax * fw), int(ay * fh)), 0, 0, 360, 1.0, -1)
    light = cv2.GaussianBlur(light, (0, 0), 6 * s) * face
    gain = 0.35 * (1 - skin.mean() / 255.0) + 0.06
    for k in range(3):
        img[..., k] = img[..., k] + light * gain * (255 - img[..., k]) * 0.6

    # Fringe.
    ellipse((cx, cy - fh * 0.78), (fw * 1.02, fh * 0.42), hair, start=180, end=360)
    ellipse((cx, cy - fh * 0.78), (fw * 1.02, fh * 0.18), hair)

    # Eyes in shadowed sockets, lids, pupils and brows.
    eye_y = cy - fh * 0.12
    lid = np.minimum(skin * 0.45, 90)
    brow = np.minimum(np.minimum(hair * 0.6, skin * 0.35), 60)
    sclera = 0.55 * np.array((235, 235, 230)) + 0.45 * skin * 0.6
    for side in (-1, 1):
        ex = cx + side * spacing
        ellipse((ex, eye_y - 2 * s), (16 * s, 10 * s), skin * 0.6)
        ellipse((ex, eye_y), (10 * s, 5 * s), sclera)
        cv2.circle(img, (int(ex), int(eye_y)), px(5 * s), colour(eye_colour), -1, cv2.LINE_AA)
        cv2.circle(img, (int(ex), int(eye_y)), px(2.6 * s), (10.0, 10.0, 10.0), -1, cv2.LINE_AA)
        ellipse((ex, eye_y), (11 * s, 5.5 * s), lid, start=180, end=360, thickness=px(2 * s))
        ellipse((ex, eye_y - 15 * s), (14 * s, 4 * s), brow, angle=-8 * side, start=180, end=360, thickness=px(4 * s))

    # Nose shadow and nostrils.
    cv2.line(
        img,
        (int(cx + 4 * s), int(eye_y + 6 * s)),
        (int(cx + 6 * s), int(eye_y + nose_length)),
        colour(skin * 0.75),
        px(3 * s),
        cv2.LINE_AA,
    )
    for side in (-1, 1):
        ellipse((cx + side * 6 * s, eye_y + nose_length + 2 * s), (3.5 * s, 2.2 * s), skin * 0.45)

    # Mouth.
    mouth_y = eye_y + nose_length + 22 * s
    ellipse((cx, mouth_y), (mouth_width, 6 * s), np.array((150, 50, 60)) * (skin / 255.0) ** 0.3)
    cv2.line(
        img,
        (int(cx - mouth_width), int(mouth_y)),
        (int(cx + mouth_width), int(mouth_y)),
        (60.0, 20.0, 25.0),
        px(2 * s),
        cv2.LINE_AA,
    )
    blurred = cv2.GaussianBlur(img, (0, 0), 0.8 * s)
    return np.clip(blurred, 0, 255).astype(np.uint8)


def synthesize_scene(seed: int, width: int = 320, height: int = 180) -> np.ndarray:
    """An outdoor-looking frame (sky, ground, a few objects, sensor-like noise), HxWx3 uint8 RGB."""
    import cv2

    rng = np.random.default_rng([seed, 0x5CE4E])
    img = np.empty((height, width, 3), np.float32)
    sky_top, sky_bottom = rng.uniform(90, 230, 3), rng.uniform(120, 250, 3)
    ramp = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
    img[:] = sky_top * (1 - ramp) + sky_bottom * ramp
    horizon = int(height * rng.uniform(0.45, 0.75))
    img[horizon:] = rng.uniform(40, 160, 3)
    for _ in range(int(rng.integers(2, 6))):
        fill = tuple(float(v) for v in rng.uniform(0, 255, 3))
        x, y = int(rng.integers(0, width)), int(rng.integers(height // 4, height))
        if rng.random() < 0.5:
            radius = int(rng.integers(height // 20 + 1, height // 5 + 2))
            cv2.circle(img, (x, y), radius, fill, -1, cv2.LINE_AA)
        else:
            w, h = (
                int(rng.integers(width // 20 + 1, width // 4 + 2)),
                int(rng.integers(height // 20 + 1, height // 3 + 2)),
            )
            cv2.rectangle(img, (x, y), (x + w, y + h), fill, -1)
    img += rng.normal(0, 4.0, img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


def calibration_images(count: int = 32, *, size: int = 224) -> list[np.ndarray]:
    """A fixed mix of synthetic faces and scenes: the default int8 calibration set when none is given."""
    images: list[np.ndarray] = []
    for index in range(count):
        if index % 2:
            images.append(synthesize_face(1000 + index, size))
        else:
            images.append(synthesize_scene(1000 + index, size, size))
    return images
