"""Loading the backbone through the real path: local weights only, ONNX export, cache, clear failures."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from devkit.clip import DEVKIT_MODEL_NAME, synthesize_face, synthesize_scene
from moderation import onnx_encoder
from moderation.backbone import Backbone, BackboneConfig, load_backbone, sha256_of_file
from moderation.errors import ModelLoadError
from moderation.onnx_encoder import EXPORT_INFO_FILE, FP32_FILE, cosine_rows, select_providers


def sample_images() -> list[np.ndarray]:
    return [synthesize_scene(i, 200, 150) for i in range(6)] + [synthesize_face(i, 128) for i in range(6)]


def test_onnx_image_encoder_agrees_with_torch(dev_backbone: Backbone) -> None:
    assert dev_backbone.runtime_name.startswith("onnxruntime-fp32/")
    pixels = dev_backbone.preprocess(sample_images())
    onnx = dev_backbone.encode_pixels(pixels)
    torch = dev_backbone.encode_pixels(pixels, encoder=dev_backbone.torch_encoder)
    assert onnx.shape == (12, dev_backbone.embed_dim)
    assert cosine_rows(onnx, torch).min() > 0.999


def test_embeddings_are_unit_length_and_tell_images_apart(dev_backbone: Backbone) -> None:
    embeddings = dev_backbone.encode_images(sample_images())
    assert np.allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)
    similarity = embeddings @ embeddings.T
    assert similarity[0, 1] < 0.999  # different scenes do not collapse to one point


def test_devkit_checkpoint_is_marked_and_hashed(dev_backbone: Backbone, dev_backbone_config: BackboneConfig) -> None:
    assert dev_backbone.development_model is True
    assert dev_backbone.model_name == DEVKIT_MODEL_NAME
    assert dev_backbone_config.weights is not None
    assert dev_backbone.model_hash == sha256_of_file(dev_backbone_config.weights)
    assert dev_backbone_config.weights.suffix == ".safetensors"


def test_second_load_reads_the_cached_export(
    dev_backbone: Backbone, dev_backbone_config: BackboneConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert dev_backbone.onnx_dir is not None
    info = json.loads((dev_backbone.onnx_dir / EXPORT_INFO_FILE).read_text())
    assert info["weights_sha256"] == dev_backbone.model_hash
    assert info["min_cosine_vs_torch"] > 0.999

    def no_export(*args: object, **kwargs: object) -> None:
        raise AssertionError("the cached export should have been used")

    monkeypatch.setattr(onnx_encoder, "_export_to", no_export)
    again = load_backbone(dev_backbone_config)
    assert again.onnx_dir == dev_backbone.onnx_dir
    assert np.allclose(again.encode_images(sample_images()[:2]), dev_backbone.encode_images(sample_images()[:2]))


@pytest.fixture
def exports(dev_backbone: Backbone, monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Stands in for torch.onnx.export with the graph the session already exported (exports are slow)."""
    assert dev_backbone.onnx_dir is not None
    good_graph = (dev_backbone.onnx_dir / FP32_FILE).read_bytes()
    written: list[Path] = []

    def export_from_session_cache(visual: object, path: Path, **kwargs: object) -> None:
        written.append(path)
        path.write_bytes(good_graph)

    monkeypatch.setattr(onnx_encoder, "_export_to", export_from_session_cache)
    return written


def test_a_damaged_cache_entry_is_exported_again(
    exports: list[Path], dev_backbone_config: BackboneConfig, tmp_path: Path
) -> None:
    config = replace(dev_backbone_config, cache_dir=tmp_path)
    first = load_backbone(config)
    assert first.onnx_dir is not None and len(exports) == 1
    (first.onnx_dir / FP32_FILE).write_bytes(b"not an onnx model")
    second = load_backbone(config)
    assert len(exports) == 2
    pixels = second.preprocess(sample_images()[:3])
    reference = second.encode_pixels(pixels, encoder=second.torch_encoder)
    assert cosine_rows(second.encode_pixels(pixels), reference).min() > 0.999


def test_an_export_that_disagrees_with_torch_is_refused_and_not_cached(
    exports: list[Path], dev_backbone_config: BackboneConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_check = onnx_encoder.check_against_torch
    monkeypatch.setattr(onnx_encoder, "check_against_torch", lambda *a, **k: real_check(*a, **k) - 0.5)
    with pytest.raises(ModelLoadError, match="disagrees with torch"):
        load_backbone(replace(dev_backbone_config, cache_dir=tmp_path))
    assert list((tmp_path / "onnx").iterdir()) == []


def test_torch_runtime_skips_the_export(dev_backbone_config: BackboneConfig, tmp_path: Path) -> None:
    backbone = load_backbone(replace(dev_backbone_config, runtime="torch", cache_dir=tmp_path))
    assert backbone.runtime_name.startswith("torch-fp32/")
    assert backbone.onnx_dir is None
    assert not (tmp_path / "onnx").exists()


def test_missing_weights_file(dev_backbone_config: BackboneConfig, tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="not found"):
        load_backbone(replace(dev_backbone_config, weights=tmp_path / "absent.safetensors"))


def test_no_weights_configured(dev_backbone_config: BackboneConfig) -> None:
    with pytest.raises(ModelLoadError, match="no CLIP weights"):
        load_backbone(replace(dev_backbone_config, weights=None))


@pytest.mark.parametrize("cut", [0.5, 0.0001])
def test_corrupt_or_truncated_safetensors(dev_backbone_config: BackboneConfig, tmp_path: Path, cut: float) -> None:
    assert dev_backbone_config.weights is not None
    data = dev_backbone_config.weights.read_bytes()
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(data[: max(1, int(len(data) * cut))])
    with pytest.raises(ModelLoadError) as raised:
        load_backbone(replace(dev_backbone_config, weights=broken, cache_dir=tmp_path))
    assert "\n" not in str(raised.value)
    assert not (tmp_path / "onnx").exists()


def test_garbage_torch_checkpoint_is_refused(dev_backbone_config: BackboneConfig, tmp_path: Path) -> None:
    bogus = tmp_path / "weights.pt"
    bogus.write_bytes(b"\x80\x04garbage that is not a torch archive")
    with pytest.raises(ModelLoadError, match=r"cannot load weights\.pt"):
        load_backbone(replace(dev_backbone_config, weights=bogus, cache_dir=tmp_path))


def test_weights_of_another_architecture(dev_backbone_config: BackboneConfig, tmp_path: Path) -> None:
    import open_clip

    other = json.loads((Path(__file__).parents[2] / "moderation/model_configs/provenance-devkit-tiny.json").read_text())
    other["vision_cfg"]["width"] = 32
    other["vision_cfg"]["head_width"] = 16
    config_file = tmp_path / "provenance-test-narrow.json"
    config_file.write_text(json.dumps(other))
    open_clip.add_model_config(config_file)
    with pytest.raises(ModelLoadError, match=r"cannot load .* as provenance-test-narrow"):
        load_backbone(replace(dev_backbone_config, model_name="provenance-test-narrow", cache_dir=tmp_path))


def test_unknown_model_name(dev_backbone_config: BackboneConfig) -> None:
    with pytest.raises(ModelLoadError, match=r"unknown CLIP model name 'ViT-B-33'.*ViT-B-32"):
        load_backbone(replace(dev_backbone_config, model_name="ViT-B-33"))


def test_hub_names_are_refused_without_touching_the_network(dev_backbone_config: BackboneConfig) -> None:
    with pytest.raises(ModelLoadError, match="remote or directory source"):
        load_backbone(replace(dev_backbone_config, model_name="hf-hub:someone/some-clip"))


def test_copied_devkit_weights_keep_their_development_marker(
    dev_backbone: Backbone, dev_backbone_config: BackboneConfig, tmp_path: Path
) -> None:
    assert dev_backbone_config.weights is not None
    renamed = tmp_path / "production-clip.safetensors"
    shutil.copyfile(dev_backbone_config.weights, renamed)
    backbone = load_backbone(replace(dev_backbone_config, weights=renamed))
    assert backbone.development_model is True
    assert backbone.onnx_dir == dev_backbone.onnx_dir  # same bytes, same cache key


def test_provider_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    import onnxruntime

    from kernel.errors import MissingDependency

    assert select_providers("cpu", required=True) == ["CPUExecutionProvider"]
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CPUExecutionProvider"])
    assert select_providers("cuda", required=False) == ["CPUExecutionProvider"]
    with pytest.raises(MissingDependency, match=r"provenance\[gpu\]"):
        select_providers("cuda:1", required=True)
    monkeypatch.setattr(
        onnxruntime, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"]
    )
    assert select_providers("cuda:1", required=True) == [
        ("CUDAExecutionProvider", {"device_id": 1}),
        "CPUExecutionProvider",
    ]
