"""The diffusers adapter: its configuration and validation paths, and its call path against a stand-in.

No real text-to-video weights can be loaded here, so `test_render_through_a_stand_in_pipeline` installs a
tiny fake `diffusers` module that records how the adapter calls it; it checks the adapter's own work (offline
loading, arguments, resizing, resampling, cameos, encoding), not any model.
"""

from __future__ import annotations

import importlib.machinery
import json
import os
import sys
import types
from pathlib import Path
from typing import Any

import pytest
from generator_testkit import pattern_image

from generator.backends import make_backend
from generator.diffusers_backend import DiffusersBackend, DiffusersConfig, hash_weights_dir, resample_indices
from generator.pipeline import render_to_blob
from generator.spec import RenderSpec
from kernel.blobstore import BlobStore
from kernel.errors import InvalidInput, MissingDependency


def weights_dir(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "model_index.json").write_text(json.dumps({"_class_name": "TextToVideoSDPipeline"}))
    (root / "unet").mkdir(exist_ok=True)
    (root / "unet" / "weights.safetensors").write_bytes(b"\x01" * 1000)
    return root


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="does not exist"):
        DiffusersBackend(DiffusersConfig(weights_dir=tmp_path / "nowhere"))


def test_a_file_is_not_a_weights_directory(tmp_path: Path) -> None:
    (tmp_path / "model.bin").write_bytes(b"x")
    with pytest.raises(InvalidInput, match="is not a directory"):
        DiffusersBackend(DiffusersConfig(weights_dir=tmp_path / "model.bin"))


def test_directory_without_model_index(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match=r"has no model_index\.json"):
        DiffusersBackend(DiffusersConfig(weights_dir=tmp_path))


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", '{"other": 1}'])
def test_unreadable_model_index(tmp_path: Path, content: str) -> None:
    (tmp_path / "model_index.json").write_text(content)
    with pytest.raises(InvalidInput, match=r"model_index\.json"):
        DiffusersBackend(DiffusersConfig(weights_dir=tmp_path))


def test_missing_diffusers_names_the_t2v_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "diffusers", None)
    with pytest.raises(MissingDependency, match=r"'diffusers'.*provenance\[t2v\]"):
        DiffusersBackend(DiffusersConfig(weights_dir=weights_dir(tmp_path / "w")))


def test_make_backend_needs_a_weights_directory() -> None:
    with pytest.raises(InvalidInput, match="needs a local weights directory"):
        make_backend("diffusers")


def test_model_hash_covers_every_file_and_only_content(tmp_path: Path) -> None:
    root = weights_dir(tmp_path / "w")
    first = hash_weights_dir(root)
    os.utime(root / "unet" / "weights.safetensors", (1, 1))
    assert hash_weights_dir(root) == first
    (root / "unet" / "weights.safetensors").write_bytes(b"\x02" * 1000)
    changed = hash_weights_dir(root)
    assert changed != first
    (root / "unet" / "weights.safetensors").rename(root / "unet" / "renamed.safetensors")
    assert hash_weights_dir(root) not in (first, changed)


def test_resample_spreads_model_frames_over_the_clip() -> None:
    assert resample_indices(4, 8).tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert resample_indices(8, 4).tolist() == [1, 3, 5, 7]
    assert resample_indices(5, 5).tolist() == [0, 1, 2, 3, 4]


class _StandInPipeline:
    calls: list[dict[str, Any]] = []

    def to(self, device: object) -> _StandInPipeline:
        return self

    def __call__(
        self,
        prompt: str,
        num_frames: int,
        height: int,
        width: int,
        num_inference_steps: int,
        generator: Any,
        output_type: str,
    ) -> types.SimpleNamespace:
        import torch

        self.calls.append(dict(prompt=prompt, num_frames=num_frames, height=height, width=width, generator=generator))
        noise = torch.rand((1, num_frames, height, width, 3), generator=generator).numpy()
        return types.SimpleNamespace(frames=noise)


@pytest.fixture
def stand_in_diffusers(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    loads: list[dict[str, Any]] = []

    class DiffusionPipeline:
        @staticmethod
        def from_pretrained(path: str, **kwargs: Any) -> _StandInPipeline:
            loads.append({"path": path, "offline": os.environ.get("HF_HUB_OFFLINE"), **kwargs})
            return _StandInPipeline()

    module = types.ModuleType("diffusers")
    module.__spec__ = importlib.machinery.ModuleSpec("diffusers", None)
    vars(module)["DiffusionPipeline"] = DiffusionPipeline
    monkeypatch.setitem(sys.modules, "diffusers", module)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("DIFFUSERS_OFFLINE", raising=False)
    _StandInPipeline.calls = []
    return loads


def test_render_through_a_stand_in_pipeline(tmp_path: Path, stand_in_diffusers: list[dict[str, Any]]) -> None:
    root = weights_dir(tmp_path / "w")
    backend = DiffusersBackend(DiffusersConfig(weights_dir=root, device="cpu", max_model_frames=8))
    face = pattern_image(96, 96, 0)
    spec = RenderSpec(
        "a cat", seed=5, duration_s=1.0, fps=12, width=140, height=250, backend="diffusers", cameos={"alice": face}
    )
    outcome = render_to_blob(spec, BlobStore(tmp_path / "blobs"), backend)

    (load,) = stand_in_diffusers
    assert load["path"] == str(root) and load["local_files_only"] is True and load["offline"] == "1"
    (call,) = _StandInPipeline.calls
    assert call["num_frames"] == 8
    assert (call["height"], call["width"]) == (256, 144)
    assert call["generator"].initial_seed() == 5
    payload = outcome.to_payload().model_dump(mode="json")
    assert (payload["width"], payload["height"], payload["frame_count"]) == (140, 250, 12)
    assert payload["generator"]["name"] == "diffusers"
    assert payload["generator"]["model_hash"] == hash_weights_dir(root)
    assert payload["generator"]["version"].startswith("TextToVideoSDPipeline")
    assert [a.cameo_id for a in outcome.script.cameos] == ["alice"]
    assert [e.kind for e in outcome.script.events] == ["cameo_enter"]
