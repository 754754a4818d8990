"""Adapter for a real text-to-video diffusion model stored locally in diffusers format.

Only local weights are used: the directory must hold a `model_index.json` (as written by
`DiffusionPipeline.save_pretrained`), the pipeline is loaded with `local_files_only=True` and the Hugging
Face hub is switched offline (`HF_HUB_OFFLINE=1`) before diffusers is imported, so a missing file is an
error here rather than a download. `diffusers` is an optional dependency (the `t2v` extra), imported only
when a model is loaded.

The model makes the picture at a size it supports (the spec's size rounded to a multiple of 16) and at most
`max_model_frames` frames; the frames are resized to the spec's size and resampled in time to the spec's
frame count. Cameos are composited into the generated frames as for the reference renderer, and the
soundtrack is the reference renderer's bed with a chime at each cameo entrance (the model makes no sound).

Determinism: sampling is seeded with a `torch.Generator` from the spec's seed, but diffusion on a GPU is
not guaranteed bit-identical between runs; `model_hash` is the hash of every file in the weights directory.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from generator.audio import synthesise
from generator.backends import RenderedVideo
from generator.cameos import CameoCompositor, plan_cameos
from generator.errors import RenderError
from generator.script import SceneScript, SoundEvent
from generator.spec import RenderSpec
from kernel.errors import InvalidInput, require

if TYPE_CHECKING:
    import torch

EXTRA = "t2v"
_CHUNK = 16


@dataclass(frozen=True, slots=True)
class DiffusersConfig:
    weights_dir: Path
    device: str | None = None
    dtype: Literal["float16", "bfloat16", "float32"] = "float16"
    num_inference_steps: int = 30
    guidance_scale: float = 7.5
    max_model_frames: int = 49
    size_multiple: int = 16


def read_model_index(weights_dir: Path) -> dict[str, Any]:
    """Check that `weights_dir` is a diffusers pipeline directory and return its model index."""
    weights_dir = Path(weights_dir)
    if not weights_dir.exists():
        raise InvalidInput(f"text-to-video weights directory {weights_dir} does not exist")
    if not weights_dir.is_dir():
        raise InvalidInput(f"text-to-video weights path {weights_dir} is not a directory")
    index_path = weights_dir / "model_index.json"
    if not index_path.is_file():
        raise InvalidInput(f"{weights_dir} is not a diffusers pipeline directory: it has no model_index.json")
    try:
        index = json.loads(index_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidInput(f"{index_path} is not readable JSON: {exc}") from exc
    if not isinstance(index, dict) or not isinstance(index.get("_class_name"), str):
        raise InvalidInput(f"{index_path} does not name a pipeline class (_class_name)")
    return index


def hash_weights_dir(weights_dir: Path) -> str:
    """sha256 over every file's relative path and content hash, in sorted order (symlinks followed)."""
    digest = hashlib.sha256()
    root = Path(weights_dir)
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        relative = path.relative_to(root).as_posix()
        if relative.startswith(".cache/"):
            continue
        file_digest = hashlib.sha256()
        with open(path, "rb") as handle:
            while block := handle.read(1 << 20):
                file_digest.update(block)
        digest.update(f"{relative}\0{file_digest.hexdigest()}\n".encode())
    return digest.hexdigest()


class DiffusersBackend:
    name = "diffusers"

    def __init__(self, config: DiffusersConfig) -> None:
        self.config = config
        self.index = read_model_index(config.weights_dir)
        require("diffusers", EXTRA)
        require("torch", EXTRA)
        if config.num_inference_steps < 1:
            raise InvalidInput("num_inference_steps must be at least 1")
        if config.max_model_frames < 1:
            raise InvalidInput("max_model_frames must be at least 1")
        self._pipeline: Any = None

    @property
    def version(self) -> str:
        from importlib.metadata import PackageNotFoundError, version

        try:
            library = version("diffusers")
        except PackageNotFoundError:
            library = "unknown"
        return f"{self.index['_class_name']} (diffusers {library})"

    @functools.cached_property
    def model_hash(self) -> str:
        return hash_weights_dir(self.config.weights_dir)

    @functools.cached_property
    def _torch_device(self) -> torch.device:
        import torch

        if self.config.device is not None:
            return torch.device(self.config.device)
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")

    @property
    def device(self) -> str:
        device = self._torch_device
        if device.type == "cuda":
            import torch

            return str(torch.cuda.get_device_name(device))
        return device.type

    def _load(self) -> Any:
        if self._pipeline is None:
            os.environ["HF_HUB_OFFLINE"] = "1"
            os.environ["DIFFUSERS_OFFLINE"] = "1"
            import diffusers
            import torch

            dtype = getattr(torch, self.config.dtype)
            if self._torch_device.type == "cpu" and dtype != torch.float32:
                dtype = torch.float32
            try:
                pipeline = diffusers.DiffusionPipeline.from_pretrained(
                    str(self.config.weights_dir), torch_dtype=dtype, local_files_only=True
                )
            except (OSError, ValueError) as exc:
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise RenderError(
                    f"could not load the text-to-video model from {self.config.weights_dir}: {first}"
                ) from exc
            self._pipeline = pipeline.to(self._torch_device)
        return self._pipeline

    def _generate(self, spec: RenderSpec) -> np.ndarray:
        """Frames from the model as uint8 (n, h, w, 3) at the model's size."""
        import torch

        pipeline = self._load()
        multiple = self.config.size_multiple
        accepted = inspect.signature(pipeline.__call__).parameters
        wanted: dict[str, Any] = {
            "prompt": spec.prompt,
            "num_frames": min(spec.frame_count, self.config.max_model_frames),
            "height": max(multiple, round(spec.height / multiple) * multiple),
            "width": max(multiple, round(spec.width / multiple) * multiple),
            "num_inference_steps": self.config.num_inference_steps,
            "guidance_scale": self.config.guidance_scale,
            "generator": torch.Generator(device=self._torch_device).manual_seed(spec.seed),
            "output_type": "np",
        }
        kwargs = {key: value for key, value in wanted.items() if key in accepted}
        try:
            with torch.inference_mode():
                result = pipeline(**kwargs)
        except torch.OutOfMemoryError as exc:
            raise RenderError(f"out of memory on {self.device} generating {spec.width}x{spec.height}") from exc
        return _as_uint8_frames(getattr(result, "frames", result))

    def render(self, spec: RenderSpec) -> RenderedVideo:
        import torch

        if spec.backend != self.name:
            raise InvalidInput(f"the spec asks for backend {spec.backend!r}, not {self.name!r}")
        raw = self._generate(spec)
        layers = plan_cameos(spec.cameos, spec.seed, spec.width, spec.height, spec.fps, spec.frame_count)
        events = tuple(
            SoundEvent("cameo_enter", layer.appearance.start_s, 1.0, 0.0, layer.appearance.cameo_id, tone_hz=880.0)
            for layer in layers
        )
        script = SceneScript(
            width=spec.width,
            height=spec.height,
            fps=spec.fps,
            frame_count=spec.frame_count,
            cameos=tuple(layer.appearance for layer in layers),
            events=events,
        )
        audio = synthesise(script, spec.seed)
        compositor = CameoCompositor(layers, self._torch_device)

        def chunks() -> Iterator[np.ndarray]:
            source = torch.from_numpy(raw).to(self._torch_device)
            for first in range(0, spec.frame_count, _CHUNK):
                count = min(_CHUNK, spec.frame_count - first)
                picks = resample_indices(raw.shape[0], spec.frame_count)[first : first + count]
                frames = _resize(source[torch.from_numpy(picks).to(self._torch_device)], spec.height, spec.width)
                compositor.apply(frames, first)
                yield frames.cpu().numpy()

        return RenderedVideo(spec.width, spec.height, spec.fps, spec.frame_count, chunks(), audio, script)


def resample_indices(source_frames: int, target_frames: int) -> np.ndarray:
    """Nearest source frame for each target frame, spreading the model's frames over the clip's duration."""
    positions = (np.arange(target_frames) + 0.5) * source_frames / target_frames
    return np.minimum(np.floor(positions).astype(np.int64), source_frames - 1)


def _as_uint8_frames(frames: Any) -> np.ndarray:
    if isinstance(frames, list | tuple):
        frames = frames[0] if frames and isinstance(frames[0], list | tuple | np.ndarray) else frames
        frames = np.stack([np.asarray(frame) for frame in frames])
    if hasattr(frames, "detach"):
        frames = frames.detach().float().cpu().numpy()
    array = np.asarray(frames)
    if array.ndim == 5:
        array = array[0]
    if array.ndim != 4 or array.shape[-1] != 3 or array.shape[0] < 1:
        raise RenderError(f"the text-to-video model returned frames of shape {array.shape}; expected (n, h, w, 3)")
    if array.dtype != np.uint8:
        array = np.clip(np.rint(array.astype(np.float32) * 255.0), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(array)


def _resize(frames: torch.Tensor, height: int, width: int) -> torch.Tensor:
    import torch

    if frames.shape[1:3] == (height, width):
        return frames.clone()
    nchw = frames.permute(0, 3, 1, 2).float()
    resized = torch.nn.functional.interpolate(nchw, size=(height, width), mode="bilinear", antialias=True)
    return resized.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()
