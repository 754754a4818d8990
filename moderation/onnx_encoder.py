"""The image tower exported to ONNX and run in onnxruntime.

Exporting takes seconds to minutes, so the graph is cached on disk under a key made of the weights' sha256,
the model name and the export settings: the second load of the same weights skips the export. A cache
entry is a directory written under a temporary name and renamed into place, so a crash never leaves a
half-written model under a valid key. Every load checks the graph against the eager model on a probe
batch of two sizes (which also proves the batch axis is dynamic) before it is trusted.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from kernel.errors import MissingDependency
from moderation.errors import ModelLoadError

if TYPE_CHECKING:
    from moderation.backbone import BackboneConfig

EXPORT_FORMAT = 1
FP32_FILE = "image_encoder.fp32.onnx"
INT8_FILE = "image_encoder.int8.onnx"
EXPORT_INFO_FILE = "export.json"
MIN_EXPORT_COSINE = 0.999
_MAX_BATCH = 4096


def export_key(*, weights_sha256: str, model_name: str, opset: int, image_size: int) -> str:
    settings = {
        "format": EXPORT_FORMAT,
        "weights_sha256": weights_sha256,
        "model_name": model_name,
        "opset": opset,
        "image_size": image_size,
        "dynamic_batch": True,
    }
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:32]


def select_providers(device: str, *, required: bool) -> list[Any]:
    """onnxruntime providers for a torch device: CUDA first when onnxruntime-gpu can serve it.

    `required` is true when CUDA was asked for by name; then a missing onnxruntime-gpu is an error
    naming the extra. With device "auto" the image tower quietly stays on the CPU provider instead.
    """
    import onnxruntime as ort

    if not device.startswith("cuda"):
        return ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        if not required:
            return ["CPUExecutionProvider"]
        raise MissingDependency(
            "running the image encoder on CUDA needs onnxruntime-gpu: install it with "
            "pip install 'provenance[gpu]', or set the moderation device to cpu"
        )
    index = int(device.split(":", 1)[1]) if ":" in device else 0
    return [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]


class OnnxImageEncoder:
    """An onnxruntime session over an exported (fp32 or int8) image tower."""

    def __init__(self, path: Path, *, providers: list[Any], num_threads: int | None, precision: str) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3
        if num_threads:
            options.intra_op_num_threads = num_threads
            options.inter_op_num_threads = 1
        self.path = path
        self.precision = precision
        self._session = ort.InferenceSession(str(path), options, providers=providers)
        self._input = self._session.get_inputs()[0].name
        self.provider = self._session.get_providers()[0]
        self.name = f"onnxruntime-{precision}/{self.provider}"

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        feed = {self._input: np.ascontiguousarray(pixels, dtype=np.float32)}
        return np.asarray(self._session.run(None, feed)[0], dtype=np.float32)


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of two embedding batches."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    denom = np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)
    return np.asarray((a * b).sum(axis=1) / denom)


def _probe_batches(image_size: int) -> list[np.ndarray]:
    rng = np.random.default_rng(20240917)
    return [rng.standard_normal((n, 3, image_size, image_size)).astype(np.float32) for n in (2, 3)]


def check_against_torch(encoder: OnnxImageEncoder, visual: Any, image_size: int, device: str) -> float:
    """Lowest cosine between the graph and the eager tower on probe batches of two sizes."""
    from moderation.backbone import TorchImageEncoder

    reference = TorchImageEncoder(visual, device)
    lowest = 1.0
    for batch in _probe_batches(image_size):
        got = encoder(batch)
        if got.shape[0] != batch.shape[0]:
            raise ModelLoadError(f"exported encoder returned {got.shape[0]} rows for a batch of {len(batch)}")
        lowest = min(lowest, float(cosine_rows(got, reference(batch)).min()))
    return lowest


def _export_to(visual: Any, path: Path, *, image_size: int, opset: int, device: str) -> None:
    import torch

    example = torch.zeros((2, 3, image_size, image_size), device=device)
    batch = torch.export.Dim("batch", min=1, max=_MAX_BATCH)
    with torch.inference_mode(False), torch.no_grad():
        torch.onnx.export(
            visual,
            (example,),
            str(path),
            input_names=["pixels"],
            output_names=["embedding"],
            dynamic_shapes=({0: batch},),
            opset_version=opset,
            external_data=False,
            verbose=False,
        )


def _write_entry(
    visual: Any,
    entry: Path,
    *,
    info: dict[str, Any],
    providers: list[Any],
    config: BackboneConfig,
    device: str,
) -> None:
    """Exports into a temporary directory, checks it, then renames it to the cache key."""
    import torch

    entry.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".export-", dir=entry.parent))
    try:
        started = time.perf_counter()
        _export_to(visual, staging / FP32_FILE, image_size=info["image_size"], opset=config.onnx_opset, device=device)
        encoder = OnnxImageEncoder(
            staging / FP32_FILE, providers=providers, num_threads=config.num_threads, precision="fp32"
        )
        agreement = check_against_torch(encoder, visual, info["image_size"], device)
        if agreement < MIN_EXPORT_COSINE:
            raise ModelLoadError(
                f"exported image encoder disagrees with torch (cosine {agreement:.5f} < {MIN_EXPORT_COSINE})"
            )
        record = dict(
            info,
            export_seconds=round(time.perf_counter() - started, 3),
            torch_version=torch.__version__,
            min_cosine_vs_torch=agreement,
        )
        (staging / EXPORT_INFO_FILE).write_text(json.dumps(record, indent=2, sort_keys=True))
        try:
            os.rename(staging, entry)
        except OSError:
            if not (entry / EXPORT_INFO_FILE).is_file():
                raise
            shutil.rmtree(staging, ignore_errors=True)
    except ModelLoadError:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    except Exception as exc:
        shutil.rmtree(staging, ignore_errors=True)
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise ModelLoadError(f"exporting the image encoder to ONNX failed: {first}") from exc


def load_or_export(
    visual: Any,
    *,
    model_name: str,
    weights_sha256: str,
    config: BackboneConfig,
    device: str,
) -> tuple[OnnxImageEncoder, Path]:
    """The fp32 encoder for these weights, exported on first use and read from the cache afterwards."""
    size = visual.image_size
    image_size = int(size[0] if isinstance(size, tuple | list) else size)
    providers = select_providers(device, required=config.device != "auto")
    key = export_key(
        weights_sha256=weights_sha256, model_name=model_name, opset=config.onnx_opset, image_size=image_size
    )
    entry = Path(config.cache_dir).expanduser() / "onnx" / key
    info = {
        "key": key,
        "format": EXPORT_FORMAT,
        "weights_sha256": weights_sha256,
        "model_name": model_name,
        "opset": config.onnx_opset,
        "image_size": image_size,
    }
    problem = ""
    for _ in range(2):
        if not (entry / EXPORT_INFO_FILE).is_file():
            _write_entry(visual, entry, info=info, providers=providers, config=config, device=device)
        try:
            encoder = OnnxImageEncoder(
                entry / FP32_FILE, providers=providers, num_threads=config.num_threads, precision="fp32"
            )
            agreement = check_against_torch(encoder, visual, image_size, device)
        except Exception as exc:
            problem = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        else:
            if agreement >= MIN_EXPORT_COSINE:
                return encoder, entry
            problem = f"cosine with torch {agreement:.5f} < {MIN_EXPORT_COSINE}"
        # A damaged or stale cache entry: drop it and export once more.
        shutil.rmtree(entry, ignore_errors=True)
    raise ModelLoadError(f"the ONNX image encoder cached in {entry} is unusable: {problem}")
