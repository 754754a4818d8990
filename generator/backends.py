"""The contract between the render step and the models that make pictures.

A backend turns a `RenderSpec` into a `RenderedVideo`: frames streamed in chunks, a soundtrack and the
scene script. The pipeline (`generator.pipeline`) adds the visible watermark, encodes and stores the file,
so no backend can skip the watermark and every backend's output is encoded the same way.

Frames are uint8 RGB numpy arrays (n, height, width, 3), yielded in order, `frame_count` frames in all;
chunks keep long clips from being held in memory whole. The iterator is single-use.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from generator.audio import AudioTrack
from generator.script import SceneScript
from generator.spec import DEFAULT_BACKEND, RenderSpec
from kernel.errors import InvalidInput


@dataclass(slots=True)
class RenderedVideo:
    width: int
    height: int
    fps: int
    frame_count: int
    frames: Iterator[np.ndarray]
    audio: AudioTrack | None
    script: SceneScript

    def collect_frames(self) -> np.ndarray:
        """All frames in one array (frame_count, H, W, 3); for tests and short clips only."""
        return np.concatenate(list(self.frames), axis=0)


@runtime_checkable
class VideoBackend(Protocol):
    @property
    def name(self) -> str:
        """Stable identifier recorded in the generation parameters (e.g. "reference")."""
        ...

    @property
    def version(self) -> str: ...

    @property
    def model_hash(self) -> str:
        """sha256 hex of what determines the output (code and parameters, or weights)."""
        ...

    @property
    def device(self) -> str:
        """Where it runs, as recorded in the event: "cpu" or the accelerator's name."""
        ...

    def render(self, spec: RenderSpec) -> RenderedVideo: ...


def make_backend(
    name: str = DEFAULT_BACKEND, *, weights_dir: Path | None = None, device: str | None = None
) -> VideoBackend:
    """Backends by the name stored in generation parameters; "diffusers" needs its weights directory."""
    if name == "reference":
        from generator.reference import ReferenceBackend

        return ReferenceBackend(device=device)
    if name == "diffusers":
        if weights_dir is None:
            raise InvalidInput("the diffusers backend needs a local weights directory (none is configured)")
        from generator.diffusers_backend import DiffusersBackend, DiffusersConfig

        return DiffusersBackend(DiffusersConfig(weights_dir=Path(weights_dir), device=device))
    raise InvalidInput(f"unknown video backend {name!r}: expected 'reference' or 'diffusers'")
