"""The CLIP backbone every classifier of the gate shares.

One model is loaded per process and reused: the policy prompts, the linear heads, the likeness matcher and
the real-footage probe all read the same image embeddings, so a frame is encoded once. Weights come only
from a local file (safetensors, or a torch file read with `weights_only=True`); a name or tag that would
make open_clip reach a model hub is refused. The image tower runs in onnxruntime from an exported graph
cached on disk by the weights' hash; the text tower stays in torch because prompts are encoded once per
policy file and cached.
"""

from __future__ import annotations

import difflib
import hashlib
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from kernel.errors import InvalidInput, require
from moderation.errors import ModelLoadError

if TYPE_CHECKING:
    from moderation.int8_gate import Int8Report

DEVKIT_METADATA_KEY = "provenance.devkit"
DEVKIT_MODEL_NAME = "provenance-devkit-tiny"
"""The development model's architecture name: production refuses heads and policies calibrated for it."""
_CHUNK = 1 << 20
_REGISTER_LOCK = threading.Lock()
_registered = False


def default_cache_dir() -> Path:
    return Path.home() / ".cache" / "provenance" / "moderation"


@dataclass(frozen=True)
class BackboneConfig:
    """Where the weights are and how to run them.

    `device` is "auto" (CUDA when torch sees a GPU and onnxruntime-gpu is installed, else CPU), "cpu",
    "cuda" or "cuda:N". `runtime` "onnxruntime" runs the exported image tower; "torch" keeps the eager
    model (the reference the export is checked against). `quantize_int8` asks for dynamic int8, which
    is only switched on after its agreement with fp32 clears both floors (see `moderation.int8_gate`).
    `num_threads` bounds onnxruntime's threads; torch's thread count belongs to the process, which sets it.
    """

    model_name: str = "ViT-B-32"
    weights: Path | None = None
    device: str = "auto"
    runtime: str = "onnxruntime"
    quantize_int8: bool = False
    int8_min_cosine: float = 0.995
    int8_min_decision_agreement: float = 0.99
    cache_dir: Path = field(default_factory=default_cache_dir)
    num_threads: int | None = None
    onnx_opset: int = 18
    batch_size: int = 32


class ImageEncoder(Protocol):
    """Maps preprocessed pixels (N, 3, H, W) float32 to raw image embeddings (N, D)."""

    name: str

    def __call__(self, pixels: np.ndarray) -> np.ndarray: ...


class TorchImageEncoder:
    """The eager image tower: the reference the exported graph must agree with."""

    def __init__(self, visual: Any, device: str) -> None:
        self._visual = visual
        self._device = device
        self.name = f"torch-fp32/{device}"

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            out = self._visual(torch.from_numpy(np.ascontiguousarray(pixels)).to(self._device))
        return np.asarray(out.float().cpu().numpy(), dtype=np.float32)


def sha256_of_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return np.asarray(vectors / np.maximum(norms, 1e-12), dtype=np.float32)


def resolve_device(device: str) -> str:
    """Turns "auto" into a concrete torch device string; an unusable explicit choice is an error."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        return device
    if device == "cuda" or device.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ModelLoadError(f"device {device!r} was asked for but torch sees no CUDA device")
        return device
    raise ModelLoadError(f"unknown device {device!r} (use auto, cpu, cuda or cuda:N)")


class Backbone:
    """A loaded CLIP model: image embeddings through the configured runtime, text through torch."""

    def __init__(
        self,
        *,
        config: BackboneConfig,
        model: Any,
        preprocess: Any,
        tokenizer: Any,
        model_hash: str,
        development_model: bool,
        device: str,
        image_encoder: ImageEncoder,
        torch_encoder: TorchImageEncoder,
        onnx_dir: Path | None,
    ) -> None:
        self.config = config
        self.model_name = config.model_name
        self.model_hash = model_hash
        self.development_model = development_model
        self.device = device
        self.image_encoder: ImageEncoder = image_encoder
        self.torch_encoder = torch_encoder
        self.onnx_dir = onnx_dir
        self.int8_report: Int8Report | None = None
        self._model = model
        self._preprocess = preprocess
        self._tokenizer = tokenizer
        self.embed_dim = int(getattr(model.visual, "output_dim", 0) or model.text_projection.shape[1])
        size = model.visual.image_size
        self.image_size = int(size[0] if isinstance(size, tuple | list) else size)

    @property
    def runtime_name(self) -> str:
        return self.image_encoder.name

    def preprocess(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """RGB uint8 arrays to the normalised pixel batch the weights were trained on.

        The model's own open_clip transform is used (resize, centre crop, CLIP mean/std), so embeddings
        match what the weights expect whatever runtime encodes them. Frames are first padded to a square:
        a centre crop of a vertical 9:16 frame would throw away its top and bottom, and what a policy must
        see can be there.
        """
        import torch
        from PIL import Image

        if not images:
            return np.zeros((0, 3, self.image_size, self.image_size), dtype=np.float32)
        tensors = [self._preprocess(Image.fromarray(_pad_to_square(_as_rgb_uint8(image)))) for image in images]
        return np.asarray(torch.stack(tensors).numpy(), dtype=np.float32)

    def encode_pixels(self, pixels: np.ndarray, *, encoder: ImageEncoder | None = None) -> np.ndarray:
        """Unit-length embeddings of a preprocessed batch, in chunks of the configured batch size."""
        run = encoder or self.image_encoder
        if len(pixels) == 0:
            return np.zeros((0, self.embed_dim), dtype=np.float32)
        step = max(1, self.config.batch_size)
        chunks = [run(pixels[i : i + step]) for i in range(0, len(pixels), step)]
        return l2_normalize(np.concatenate(chunks, axis=0))

    def encode_images(self, images: Sequence[np.ndarray]) -> np.ndarray:
        return self.encode_pixels(self.preprocess(images))

    def encode_texts(self, prompts: Sequence[str]) -> np.ndarray:
        import torch

        if not prompts:
            return np.zeros((0, self.embed_dim), dtype=np.float32)
        tokens = self._tokenizer(list(prompts)).to(self.device)
        with torch.inference_mode():
            out = self._model.encode_text(tokens)
        return l2_normalize(np.asarray(out.float().cpu().numpy(), dtype=np.float32))

    def enable_int8(
        self,
        calibration_images: Sequence[np.ndarray],
        decide: Callable[[np.ndarray], np.ndarray],
        *,
        calibration_id: str,
        decision_id: str,
    ) -> Int8Report:
        """Switches the image tower to int8 only if it agrees with fp32 well enough; else keeps fp32.

        The report (stored beside the cached model) says which happened and why; `self.int8_report`
        keeps it for decisions and traces.
        """
        from moderation.int8_gate import gate_int8

        report, encoder = gate_int8(
            self,
            calibration_images,
            decide,
            calibration_id=calibration_id,
            decision_id=decision_id,
        )
        self.int8_report = report
        if encoder is not None:
            self.image_encoder = encoder
        return report


def _as_rgb_uint8(image: np.ndarray) -> np.ndarray:
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3 or 0 in image.shape:
        raise InvalidInput(f"expected an HxWx3 uint8 RGB image, got shape {image.shape} {image.dtype}")
    return image


def register_model_configs() -> None:
    """Makes the configs shipped in `moderation/model_configs` known to open_clip (once per process)."""
    global _registered
    with _REGISTER_LOCK:
        if _registered:
            return
        import open_clip

        open_clip.add_model_config(Path(__file__).with_name("model_configs"))
        _registered = True


def is_devkit_checkpoint(path: Path) -> bool:
    """True when a safetensors checkpoint carries the devkit marker (random weights for development)."""
    if path.suffix != ".safetensors":
        return False
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="numpy") as handle:
            metadata = handle.metadata() or {}
    except Exception as exc:
        raise ModelLoadError(f"weights file {path} is not a readable safetensors file: {_first_line(exc)}") from exc
    return DEVKIT_METADATA_KEY in metadata


def _first_line(exc: BaseException, limit: int = 200) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _check_model_name(name: str) -> dict[str, Any]:
    import open_clip

    if ":" in name:
        raise ModelLoadError(f"model name {name!r} names a remote or directory source; give a config name")
    model_cfg = open_clip.get_model_config(name)
    if model_cfg is None:
        close = difflib.get_close_matches(name, open_clip.list_models(), n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ModelLoadError(f"unknown CLIP model name {name!r}{hint}")
    text_cfg = model_cfg.get("text_cfg", {})
    if "hf_model_name" in text_cfg or "hf_tokenizer_name" in text_cfg:
        raise ModelLoadError(f"model {name!r} needs a tokenizer or text tower from a model hub; not supported")
    return dict(model_cfg)


def load_backbone(config: BackboneConfig) -> Backbone:
    """Loads the weights file through open_clip and prepares the image runtime.

    Raises `ModelLoadError` for a missing, unreadable or mismatched weights file, an unknown model name,
    or an export that disagrees with the eager model; nothing is cached in those cases.
    """
    require("torch", "ml")
    require("open_clip", "ml")
    if config.weights is None:
        raise ModelLoadError("no CLIP weights file configured")
    weights = Path(config.weights).expanduser().resolve()
    if not weights.is_file():
        raise ModelLoadError(f"CLIP weights file not found: {weights}")
    if config.runtime not in ("onnxruntime", "torch"):
        raise ModelLoadError(f"unknown runtime {config.runtime!r} (use onnxruntime or torch)")
    register_model_configs()
    _check_model_name(config.model_name)
    development_model = is_devkit_checkpoint(weights)
    model_hash = sha256_of_file(weights)
    device = resolve_device(config.device)

    import open_clip

    try:
        model, _, preprocess = open_clip.create_model_and_transforms(
            config.model_name,
            pretrained=str(weights),
            device=device,
            weights_only=True,
            pretrained_image=False,
            pretrained_text=False,
        )
        tokenizer = open_clip.get_tokenizer(config.model_name)
    except Exception as exc:
        raise ModelLoadError(f"cannot load {weights.name} as {config.model_name}: {_first_line(exc)}") from exc
    model.eval()
    torch_encoder = TorchImageEncoder(model.visual, device)
    image_encoder: ImageEncoder = torch_encoder
    onnx_dir: Path | None = None
    if config.runtime == "onnxruntime":
        require("onnxruntime", "ml")
        require("onnx", "ml")
        from moderation.onnx_encoder import load_or_export

        image_encoder, onnx_dir = load_or_export(
            model.visual,
            model_name=config.model_name,
            weights_sha256=model_hash,
            config=config,
            device=device,
        )
    return Backbone(
        config=config,
        model=model,
        preprocess=preprocess,
        tokenizer=tokenizer,
        model_hash=model_hash,
        development_model=development_model,
        device=device,
        image_encoder=image_encoder,
        torch_encoder=torch_encoder,
        onnx_dir=onnx_dir,
    )


def _pad_to_square(image: np.ndarray) -> np.ndarray:
    """Centre the frame on a black square as large as its longer side."""
    height, width = image.shape[:2]
    if height == width:
        return image
    side = max(height, width)
    square = np.zeros((side, side, 3), dtype=np.uint8)
    top, left = (side - height) // 2, (side - width) // 2
    square[top : top + height, left : left + width] = image
    return square
