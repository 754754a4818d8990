"""The backbone on a GPU: the eager image tower on CUDA agrees with the CPU's, and a host with CUDA but without
onnxruntime-gpu ("auto") still loads, exporting from the GPU model and running the graph on the CPU.

Skipped where torch sees no CUDA device (CI has none); run on a GPU host with
`scripts/test tests/moderation/test_moderation_cuda.py`.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from moderation.backbone import BackboneConfig, load_backbone
from moderation.onnx_encoder import cosine_rows
from tests.moderation.test_moderation_backbone import sample_images

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def test_the_eager_tower_on_cuda_agrees_with_the_cpu(dev_backbone_config: BackboneConfig, tmp_path: Path) -> None:
    on_cpu = load_backbone(replace(dev_backbone_config, runtime="torch", cache_dir=tmp_path))
    on_gpu = load_backbone(replace(dev_backbone_config, runtime="torch", device="cuda", cache_dir=tmp_path))
    assert on_gpu.runtime_name == "torch-fp32/cuda"
    images = sample_images()
    cpu, gpu = on_cpu.encode_images(images), on_gpu.encode_images(images)
    assert gpu.shape == cpu.shape == (len(images), on_cpu.embed_dim)
    assert cosine_rows(cpu, gpu).min() > 0.999


def test_auto_on_a_gpu_host_agrees_whichever_provider_runs_the_graph(
    dev_backbone_config: BackboneConfig, tmp_path: Path
) -> None:
    import onnxruntime

    auto = load_backbone(replace(dev_backbone_config, device="auto", cache_dir=tmp_path))
    assert auto.device == "cuda"
    available = onnxruntime.get_available_providers()
    provider = "CUDAExecutionProvider" if "CUDAExecutionProvider" in available else "CPUExecutionProvider"
    assert auto.runtime_name == f"onnxruntime-fp32/{provider}"
    pixels = auto.preprocess(sample_images())
    graph = auto.encode_pixels(pixels)
    eager = auto.encode_pixels(pixels, encoder=auto.torch_encoder)
    assert cosine_rows(graph, eager).min() > 0.999
