"""The reference renderer on a GPU, held to what its module promises: frames drawn on CUDA differ from the CPU's
by at most a level in a few pixels, and the soundtrack and scene script do not differ at all.

Skipped where torch sees no CUDA device (CI has none); run on a GPU host with
`scripts/test tests/generator/test_generator_cuda.py`.
"""

from __future__ import annotations

import numpy as np
import pytest
from generator_testkit import pattern_image

from generator.reference import ReferenceBackend
from generator.spec import RenderSpec

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.parametrize(
    "prompt",
    ["three red balls and a blue box bouncing at sunset", "six balls and three boxes, blood and gore, at night"],
)
def test_cuda_frames_match_the_cpu_frames_to_a_level(prompt: str) -> None:
    spec = RenderSpec(
        prompt, seed=11, duration_s=1.5, fps=12, width=240, height=416, cameos={"alice": pattern_image(128, 128, 0)}
    )
    gpu = ReferenceBackend(device="cuda")
    assert gpu.device == torch.cuda.get_device_name(0)
    on_cpu = ReferenceBackend(device="cpu").render(spec)
    on_gpu = gpu.render(spec)

    cpu_frames, gpu_frames = on_cpu.collect_frames(), on_gpu.collect_frames()
    assert gpu_frames.shape == cpu_frames.shape == (spec.frame_count, 416, 240, 3)
    assert gpu_frames.dtype == np.uint8
    difference = np.abs(cpu_frames.astype(np.int16) - gpu_frames.astype(np.int16))
    assert difference.max() <= 1
    assert np.count_nonzero(difference) <= 0.001 * difference.size
    assert on_gpu.script == on_cpu.script
    assert on_cpu.audio is not None and on_gpu.audio is not None
    assert np.array_equal(on_gpu.audio.samples, on_cpu.audio.samples)
