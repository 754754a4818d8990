from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from generator.pipeline import RenderOutcome, render_to_blob
from generator.reference import ReferenceBackend
from generator.spec import RenderSpec
from kernel.blobstore import BlobStore


def small(prompt: str, seed: int, duration_s: float = 1.0, fps: int = 24, backend: str = "reference") -> RenderSpec:
    """A 144x256 spec: big enough for every feature, small enough for fast tests."""
    return RenderSpec(prompt, seed=seed, duration_s=duration_s, fps=fps, width=144, height=256, backend=backend)


@dataclass(frozen=True)
class StoredClip:
    spec: RenderSpec
    outcome: RenderOutcome
    path: Path
    store: BlobStore


@pytest.fixture(scope="session")
def backend() -> ReferenceBackend:
    return ReferenceBackend(device="cpu")


@pytest.fixture(scope="session")
def bouncing_clip(tmp_path_factory: pytest.TempPathFactory, backend: ReferenceBackend) -> StoredClip:
    """One small clip with several bounces, rendered once and shared by the read-only checks."""
    store = BlobStore(tmp_path_factory.mktemp("clip") / "blobs")
    spec = small("two balls and a box bouncing at sunset", seed=8, duration_s=2.0)
    outcome = render_to_blob(spec, store, backend)
    return StoredClip(spec, outcome, store.resolve(outcome.blob.uri), store)
