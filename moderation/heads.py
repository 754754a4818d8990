"""Linear heads on CLIP image embeddings: policy categories and the real-footage probe.

A head is a logistic regression over unit-length image embeddings, stored as a safetensors file (weight,
bias) with a JSON file beside it that names the positive label and the backbone it was trained on. Its
scores mean nothing on another backbone, so loading it against a backbone with a different model hash is
refused.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from moderation.errors import ModelLoadError

if TYPE_CHECKING:
    from moderation.backbone import Backbone

HEAD_FORMAT = "provenance-linear-head/1"


def head_paths(out: Path) -> tuple[Path, Path]:
    """(weights, metadata) paths for a head named `out` with or without its .safetensors suffix."""
    out = Path(out)
    stem = out.name.removesuffix(".safetensors").removesuffix(".json")
    return out.with_name(stem + ".safetensors"), out.with_name(stem + ".json")


@dataclass(frozen=True)
class LinearHead:
    weight: np.ndarray
    bias: float
    positive_label: str
    backbone_model_hash: str
    backbone_model_name: str
    sha256: str = ""
    path: Path | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def probability(self, embeddings: np.ndarray) -> np.ndarray:
        """P(positive label) per embedding row."""
        logits = np.asarray(embeddings, dtype=np.float64) @ self.weight.astype(np.float64) + self.bias
        return np.asarray(1.0 / (1.0 + np.exp(-np.clip(logits, -60, 60))))

    def check_backbone(self, backbone: Backbone) -> None:
        if self.backbone_model_hash != backbone.model_hash:
            where = self.path.name if self.path else "head"
            raise ModelLoadError(
                f"{where} was trained on backbone {self.backbone_model_hash[:12]}, "
                f"not the loaded {backbone.model_hash[:12]}; retrain it for these weights"
            )
        if self.weight.shape != (backbone.embed_dim,):
            raise ModelLoadError(f"head has {self.weight.shape[0]} inputs; the backbone gives {backbone.embed_dim}")


def save_head(head: LinearHead, out: Path, metadata: Mapping[str, Any]) -> tuple[Path, Path]:
    """Writes weights then metadata, each to a temporary file renamed into place."""
    from safetensors.numpy import save_file

    weights_path, meta_path = head_paths(out)
    weights_path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {
        "weight": np.ascontiguousarray(head.weight, dtype=np.float32),
        "bias": np.asarray([head.bias], dtype=np.float32),
    }
    header = {
        "format": HEAD_FORMAT,
        "positive_label": head.positive_label,
        "backbone_model_hash": head.backbone_model_hash,
    }
    record = dict(
        metadata,
        format=HEAD_FORMAT,
        positive_label=head.positive_label,
        backbone_model_hash=head.backbone_model_hash,
        backbone_model_name=head.backbone_model_name,
        embed_dim=int(head.weight.shape[0]),
    )
    from moderation.backbone import sha256_of_file

    _atomic_write(weights_path, lambda name: save_file(tensors, name, metadata=header))
    record["weights_sha256"] = sha256_of_file(weights_path)
    _atomic_write(meta_path, lambda name: Path(name).write_text(json.dumps(record, indent=2, sort_keys=True)))
    return weights_path, meta_path


def load_head(path: Path) -> LinearHead:
    from safetensors import safe_open

    from moderation.backbone import sha256_of_file

    weights_path, meta_path = head_paths(path)
    if not weights_path.is_file():
        raise ModelLoadError(f"head weights not found: {weights_path}")
    if not meta_path.is_file():
        raise ModelLoadError(f"head metadata not found beside its weights: {meta_path}")
    try:
        metadata = json.loads(meta_path.read_text())
        with safe_open(str(weights_path), framework="numpy") as handle:
            weight = np.asarray(handle.get_tensor("weight"), dtype=np.float32).reshape(-1)
            bias = float(np.asarray(handle.get_tensor("bias")).reshape(-1)[0])
    except Exception as exc:
        raise ModelLoadError(f"cannot read head {weights_path.name}: corrupt or not a head file") from exc
    if not isinstance(metadata, dict) or metadata.get("format") != HEAD_FORMAT:
        raise ModelLoadError(f"{meta_path.name} is not a {HEAD_FORMAT} metadata file")
    if not np.all(np.isfinite(weight)) or not np.isfinite(bias):
        raise ModelLoadError(f"head {weights_path.name} holds non-finite weights")
    digest = sha256_of_file(weights_path)
    if metadata.get("weights_sha256") != digest:
        raise ModelLoadError(f"{meta_path.name} does not describe {weights_path.name} (sha256 differs)")
    return LinearHead(
        weight=weight,
        bias=bias,
        positive_label=str(metadata.get("positive_label", "")),
        backbone_model_hash=str(metadata.get("backbone_model_hash", "")),
        backbone_model_name=str(metadata.get("backbone_model_name", "")),
        sha256=digest,
        path=weights_path,
        metadata=metadata,
    )


def _atomic_write(path: Path, write: Any) -> None:
    handle, temp_name = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    os.close(handle)
    try:
        write(temp_name)
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
