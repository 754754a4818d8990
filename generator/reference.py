"""The built-in reference video model: a physics scene drawn from the prompt, with sound, on torch.

It is a real renderer rather than a learned model: prompt words pick the background, the objects and their
colours (see `generator.scene_plan`), objects bounce under simulated gravity (`generator.physics`), the
prompt is drawn as a caption, cameos are composited in (`generator.cameos`) and the soundtrack follows the
picture (`generator.audio`). It runs on CUDA when present, else on the CPU.

Determinism: for the same (prompt, seed, parameters, cameo images) the frames are identical on the same
device type with the same torch version; the motion, the scene script and the soundtrack are float64 numpy
and identical everywhere. Frames drawn on CPU and on CUDA may differ by a level in a few pixels.
`model_hash` is the sha256 of the renderer's source and version, so a change to the renderer shows up in
the provenance record of every video it makes.

On a CPU shared with other busy processes, start workers with OMP_WAIT_POLICY=passive: the drawing is many
small tensor ops, and torch's spinning OpenMP threads make them several times slower under contention.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from generator.audio import synthesise
from generator.backends import RenderedVideo
from generator.cameos import plan_cameos
from generator.errors import RenderError
from generator.physics import simulate
from generator.scene_plan import ScenePlan, plan_scene
from generator.script import SceneScript, SoundEvent
from generator.spec import RenderSpec
from generator.text import caption

RENDERER_VERSION = "1.0.0"
_HASHED_MODULES = (
    "generator.reference",
    "generator.scene_plan",
    "generator.physics",
    "generator.raster",
    "generator.cameos",
    "generator.audio",
    "generator.text",
)


@functools.cache
def renderer_hash() -> str:
    digest = hashlib.sha256(f"reference-renderer {RENDERER_VERSION}\n".encode())
    for name in _HASHED_MODULES:
        module = importlib.import_module(name)
        source = Path(str(module.__file__))
        digest.update(f"{name}\n".encode())
        digest.update(source.read_bytes())
    return digest.hexdigest()


def _tone(plan: ScenePlan, index: int) -> float:
    obj = plan.objects[index]
    tone = 9.0 / obj.size
    if obj.kind == "box":
        tone *= 1.8
    return float(min(max(tone, 60.0), 600.0))


class ReferenceBackend:
    """Stateless between renders; safe to reuse for many specs."""

    name = "reference"
    version = RENDERER_VERSION

    def __init__(self, device: str | None = None) -> None:
        import torch

        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self._device = torch.device(device)
        if self._device.type == "cuda" and not torch.cuda.is_available():
            raise RenderError("the reference renderer was asked for CUDA, but no CUDA device is available")

    @property
    def model_hash(self) -> str:
        return renderer_hash()

    @property
    def device(self) -> str:
        if self._device.type == "cuda":
            import torch

            return str(torch.cuda.get_device_name(self._device))
        return self._device.type

    def render(self, spec: RenderSpec) -> RenderedVideo:
        from generator.raster import ScenePainter

        width, height, fps, frames = spec.width, spec.height, spec.fps, spec.frame_count
        plan = plan_scene(spec.prompt, spec.seed, width, height)
        motion = simulate(plan, fps, frames, spec.seed)
        text = caption(spec.prompt, width, height)
        layers = plan_cameos(
            spec.cameos, spec.seed, width, height, fps, frames, top=text.y + text.height + max(2, height // 100)
        )
        events = [
            SoundEvent(
                kind="bounce",
                time_s=hit.time_s,
                strength=min(1.0, hit.speed / 3.0),
                pan=2.0 * hit.point[0] / plan.world_width - 1.0,
                source=f"object:{hit.object_index}",
                surface=hit.surface,
                tone_hz=_tone(plan, hit.object_index),
            )
            for hit in motion.impacts
        ]
        for layer in layers:
            x0, _, x1, _ = layer.appearance.boxes[0]
            events.append(
                SoundEvent(
                    kind="cameo_enter",
                    time_s=layer.appearance.start_s,
                    strength=1.0,
                    pan=(x0 + x1) / width - 1.0,
                    source=layer.appearance.cameo_id,
                    tone_hz=880.0,
                )
            )
        events.sort(key=lambda event: (event.time_s, event.source))
        script = SceneScript(
            width=width,
            height=height,
            fps=fps,
            frame_count=frames,
            cameos=tuple(layer.appearance for layer in layers),
            events=tuple(events),
            content_flags=("splatter",) if plan.splatter else (),
        )
        audio = synthesise(script, spec.seed, plan.bed_root_hz)
        painter = ScenePainter(plan, motion, width, height, fps, text, layers, self._device)
        return RenderedVideo(width, height, fps, frames, self._guarded(painter.chunks(frames)), audio, script)

    def _guarded(self, chunks: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
        import torch

        try:
            yield from chunks
        except torch.OutOfMemoryError as exc:
            raise RenderError(
                f"out of memory on {self.device} while drawing frames: render a smaller size or fewer frames"
            ) from exc
