"""What to render: the prompt, the seed and the picture parameters, validated on construction.

A spec is checked as soon as it is made so that a bad request is refused before any work is queued or any
file is written. `to_params()` is the JSON-safe record of everything but the prompt (which the request event
carries on its own) and the cameo images (media never goes into events: the event names cameo ids).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np

from kernel.errors import InvalidInput

MAX_PROMPT_CHARS = 1000
MIN_SIDE, MAX_SIDE = 64, 2160
MIN_DURATION_S, MAX_DURATION_S = 0.5, 60.0
MIN_FPS, MAX_FPS = 1, 60
MAX_SEED = 2**63 - 1
MAX_CAMEOS = 8
MIN_CAMEO_SIDE, MAX_CAMEO_SIDE = 16, 4096
DEFAULT_BACKEND = "reference"
PARAMS_VERSION = 1

_PARAM_KEYS = frozenset({"params_version", "backend", "seed", "duration_s", "fps", "width", "height", "parent"})


def _is_int(value: object) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _validate_prompt(prompt: object) -> str:
    if not isinstance(prompt, str):
        raise InvalidInput(f"prompt must be text, not {type(prompt).__name__}")
    text = prompt.strip()
    if not text:
        raise InvalidInput("prompt is empty: describe the video to generate")
    if len(text) > MAX_PROMPT_CHARS:
        raise InvalidInput(f"prompt is {len(text)} characters long; the limit is {MAX_PROMPT_CHARS}")
    if "\x00" in text:
        raise InvalidInput("prompt contains a NUL character")
    return text


def _validate_side(name: str, value: object) -> int:
    if not _is_int(value):
        raise InvalidInput(f"{name} must be a whole number of pixels, not {value!r}")
    side = int(value)  # type: ignore[call-overload]
    if not MIN_SIDE <= side <= MAX_SIDE:
        raise InvalidInput(f"{name} {side} px is out of range: it must be between {MIN_SIDE} and {MAX_SIDE}")
    if side % 2:
        raise InvalidInput(f"{name} {side} px is odd: H.264 with yuv420p needs even sizes, use {side + 1}")
    return side


def _validate_cameo(cameo_id: object, image: object) -> None:
    if not isinstance(cameo_id, str) or not cameo_id.strip():
        raise InvalidInput(f"cameo id must be a non-empty string, not {cameo_id!r}")
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        got = f"{image.dtype} array of shape {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
        raise InvalidInput(f"cameo {cameo_id!r}: the reference image must be an HxWx3 uint8 RGB array, got {got}")
    height, width = image.shape[:2]
    if min(height, width) < MIN_CAMEO_SIDE or max(height, width) > MAX_CAMEO_SIDE:
        raise InvalidInput(
            f"cameo {cameo_id!r}: reference image {width}x{height} must have sides between "
            f"{MIN_CAMEO_SIDE} and {MAX_CAMEO_SIDE} px"
        )


@dataclass(frozen=True, eq=False)
class RenderSpec:
    """A request to render one clip; invalid values raise `InvalidInput` here, not later in a worker."""

    prompt: str
    seed: int
    duration_s: float = 4.0
    fps: int = 24
    width: int = 576
    height: int = 1024
    cameos: Mapping[str, np.ndarray] = field(default_factory=dict, repr=False)
    backend: str = DEFAULT_BACKEND
    parent: Mapping[str, Any] | None = None
    """The parent's generation parameters when this spec is a remix (kept so the record shows its origin)."""

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "prompt", _validate_prompt(self.prompt))
        if not _is_int(self.seed) or not 0 <= int(self.seed) <= MAX_SEED:
            raise InvalidInput(f"seed must be a whole number between 0 and 2**63-1, not {self.seed!r}")
        set_(self, "seed", int(self.seed))
        duration = self.duration_s
        if not isinstance(duration, int | float | np.integer | np.floating) or isinstance(duration, bool):
            raise InvalidInput(f"duration must be a number of seconds, not {duration!r}")
        duration = float(duration)
        if not math.isfinite(duration) or not MIN_DURATION_S <= duration <= MAX_DURATION_S:
            raise InvalidInput(
                f"duration {duration!r} s is out of range: it must be between {MIN_DURATION_S} and {MAX_DURATION_S} s"
            )
        set_(self, "duration_s", duration)
        if not _is_int(self.fps) or not MIN_FPS <= int(self.fps) <= MAX_FPS:
            raise InvalidInput(f"fps must be a whole number between {MIN_FPS} and {MAX_FPS}, not {self.fps!r}")
        set_(self, "fps", int(self.fps))
        set_(self, "width", _validate_side("width", self.width))
        set_(self, "height", _validate_side("height", self.height))
        if not isinstance(self.backend, str) or not self.backend:
            raise InvalidInput(f"backend must be a non-empty name, not {self.backend!r}")
        if not isinstance(self.cameos, Mapping):
            raise InvalidInput("cameos must map cameo ids to reference images")
        if len(self.cameos) > MAX_CAMEOS:
            raise InvalidInput(f"{len(self.cameos)} cameos requested; at most {MAX_CAMEOS} fit in one video")
        for cameo_id, image in self.cameos.items():
            _validate_cameo(cameo_id, image)
        if self.cameos and self.frame_count < 2 * len(self.cameos):
            raise InvalidInput(
                f"{len(self.cameos)} cameos need at least {2 * len(self.cameos)} frames; "
                f"this clip has {self.frame_count}: make it longer or raise the fps"
            )
        set_(self, "cameos", MappingProxyType(dict(self.cameos)))
        if self.parent is not None:
            if not isinstance(self.parent, Mapping):
                raise InvalidInput("parent must be the parent's generation parameters")
            set_(self, "parent", MappingProxyType({k: v for k, v in self.parent.items() if k != "parent"}))

    @property
    def frame_count(self) -> int:
        return max(1, math.floor(self.duration_s * self.fps + 0.5))

    @property
    def exact_duration_s(self) -> float:
        """The duration the file will have: a whole number of frames."""
        return self.frame_count / self.fps

    def to_params(self) -> dict[str, Any]:
        params: dict[str, Any] = {
            "params_version": PARAMS_VERSION,
            "backend": self.backend,
            "seed": self.seed,
            "duration_s": self.duration_s,
            "fps": self.fps,
            "width": self.width,
            "height": self.height,
        }
        if self.parent is not None:
            params["parent"] = dict(self.parent)
        return params

    @classmethod
    def from_params(
        cls, params: Mapping[str, Any], prompt: str, cameos: Mapping[str, np.ndarray] | None = None
    ) -> RenderSpec:
        """Rebuild a spec from stored parameters; unknown keys are refused rather than silently dropped."""
        if not isinstance(params, Mapping):
            raise InvalidInput("generation parameters must be a mapping")
        unknown = sorted(set(params) - _PARAM_KEYS)
        if unknown:
            raise InvalidInput(f"unknown generation parameters: {', '.join(map(str, unknown))}")
        version = params.get("params_version", PARAMS_VERSION)
        if version != PARAMS_VERSION:
            raise InvalidInput(
                f"generation parameters version {version!r} is not supported (expected {PARAMS_VERSION})"
            )
        if "seed" not in params:
            raise InvalidInput("generation parameters have no seed")
        defaults = cls.__dataclass_fields__
        return cls(
            prompt=prompt,
            seed=params["seed"],
            duration_s=params.get("duration_s", defaults["duration_s"].default),
            fps=params.get("fps", defaults["fps"].default),
            width=params.get("width", defaults["width"].default),
            height=params.get("height", defaults["height"].default),
            backend=params.get("backend", DEFAULT_BACKEND),
            cameos=dict(cameos or {}),
            parent=params.get("parent"),
        )

    @classmethod
    def remix(
        cls,
        parent_params: Mapping[str, Any],
        prompt: str,
        seed: int | None = None,
        cameos: Mapping[str, np.ndarray] | None = None,
    ) -> RenderSpec:
        """A remix keeps the parent's seed and picture parameters, so its scene starts from the parent's."""
        base = cls.from_params(parent_params, prompt="parent", cameos=None)
        return cls(
            prompt=prompt,
            seed=base.seed if seed is None else seed,
            duration_s=base.duration_s,
            fps=base.fps,
            width=base.width,
            height=base.height,
            backend=base.backend,
            cameos=dict(cameos or {}),
            parent=base.to_params(),
        )
