"""A failed render raises RenderError with a one-line reason and leaves no file behind."""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import small

import generator.pipeline as pipeline
from generator.audio import AudioTrack
from generator.backends import RenderedVideo
from generator.encode import EncoderConfig
from generator.errors import RenderError
from generator.pipeline import render_to_blob
from generator.reference import ReferenceBackend
from generator.script import SceneScript
from generator.spec import RenderSpec
from kernel.blobstore import BlobStore, BlobWriteError
from kernel.errors import InvalidInput, ProvenanceError

SPEC = small("a ball", seed=1, duration_s=0.5)


def files_under(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if not p.is_dir()] if root.exists() else []


def test_render_error_is_a_provenance_error() -> None:
    assert issubclass(RenderError, ProvenanceError)


def test_disk_full_while_encoding(tmp_path: Path, backend: ReferenceBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    """The temporary file is /dev/full, so the encoder's own writes fail with ENOSPC."""
    store = BlobStore(tmp_path / "blobs")

    def full_temp(root: Path) -> Path:
        root.mkdir(parents=True, exist_ok=True)
        link = root / ".render-full.mp4"
        link.symlink_to("/dev/full")
        return link

    monkeypatch.setattr(pipeline, "_temp_video", full_temp)
    with pytest.raises(RenderError, match="No space left on device") as caught:
        render_to_blob(SPEC, store, backend)
    assert "\n" not in str(caught.value)
    assert files_under(store.root) == []
    assert not (store.root / ".render-full.mp4").is_symlink()
    assert not any(thread.name == "render-prefetch" for thread in threading.enumerate())


def test_disk_full_while_storing(tmp_path: Path, backend: ReferenceBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    store = BlobStore(tmp_path / "blobs")

    def no_space(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("kernel.blobstore.os.fsync", no_space)
    with pytest.raises(BlobWriteError, match=r"could not store the rendered video: no space left on device"):
        render_to_blob(SPEC, store, backend)
    assert files_under(store.root) == []


def test_store_root_that_cannot_be_a_directory(tmp_path: Path, backend: ReferenceBackend) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    with pytest.raises(BlobWriteError, match="cannot write in the blob store directory"):
        render_to_blob(SPEC, BlobStore(blocker / "blobs"), backend)
    assert [p.name for p in tmp_path.iterdir()] == ["not-a-dir"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_read_only_store_directory(tmp_path: Path, backend: ReferenceBackend) -> None:
    root = tmp_path / "blobs"
    root.mkdir()
    root.chmod(0o500)
    try:
        with pytest.raises(BlobWriteError):
            render_to_blob(SPEC, BlobStore(root), backend)
        assert files_under(root) == []
    finally:
        root.chmod(0o700)


def test_encoder_that_cannot_start(tmp_path: Path, backend: ReferenceBackend) -> None:
    store = BlobStore(tmp_path / "blobs")
    with pytest.raises(RenderError, match="could not encode the video"):
        render_to_blob(SPEC, store, backend, encoder=EncoderConfig(preset="no-such-preset"))
    assert files_under(store.root) == []


class _BrokenBackend:
    """A backend that breaks the contract in a chosen way, to check the pipeline catches it."""

    name = "reference"
    version = "test"
    model_hash = "0" * 64
    device = "cpu"

    def __init__(self, frames: Iterator[np.ndarray], frame_count: int = 12) -> None:
        self._frames = frames
        self._count = frame_count

    def render(self, spec: RenderSpec) -> RenderedVideo:
        script = SceneScript(spec.width, spec.height, spec.fps, spec.frame_count)
        audio = AudioTrack(np.zeros((2, 24_000), np.float32))
        return RenderedVideo(spec.width, spec.height, spec.fps, self._count, self._frames, audio, script)


@pytest.mark.parametrize(
    ("frames", "count", "message"),
    [
        (iter([np.zeros((12, 256, 144, 4), np.uint8)]), 12, r"uint8 \(12, 256, 144, 4\)"),
        (iter([np.zeros((12, 256, 144, 3), np.float32)]), 12, "float32"),
        (iter([np.zeros((5, 256, 144, 3), np.uint8)]), 12, "produced 5 frames; 12 were requested"),
        (iter([np.zeros((13, 256, 144, 3), np.uint8)]), 12, "more than the 12 frames"),
        (iter([]), 10, "rendered 144x256 at 24 fps, 10 frames"),
    ],
)
def test_backend_that_breaks_the_frame_contract(
    tmp_path: Path, frames: Iterator[np.ndarray], count: int, message: str
) -> None:
    store = BlobStore(tmp_path / "blobs")
    with pytest.raises(RenderError, match=message):
        render_to_blob(SPEC, store, _BrokenBackend(frames, count))
    assert files_under(store.root) == []


def test_a_crash_inside_the_backend_still_removes_the_temporary_file(tmp_path: Path) -> None:
    def crashing() -> Iterator[np.ndarray]:
        yield np.zeros((4, 256, 144, 3), np.uint8)
        raise KeyboardInterrupt

    store = BlobStore(tmp_path / "blobs")
    with pytest.raises(KeyboardInterrupt):
        render_to_blob(SPEC, store, _BrokenBackend(crashing()))
    assert files_under(store.root) == []


def test_backend_must_match_the_spec(tmp_path: Path, backend: ReferenceBackend) -> None:
    spec = small("a ball", seed=1, duration_s=0.5, backend="diffusers")
    with pytest.raises(InvalidInput, match="asks for backend 'diffusers' but 'reference' was given"):
        render_to_blob(spec, BlobStore(tmp_path), backend)
    with pytest.raises(InvalidInput, match="unknown video backend 'nope'"):
        render_to_blob(small("a ball", seed=1, backend="nope"), BlobStore(tmp_path))
