"""The render step as the pipeline calls it: spec in, an H.264 file in the blob store and its record out.

`render_to_blob` renders with a backend, draws the visible watermark on every frame, encodes to a temporary
file inside the blob store's directory (same filesystem, so nothing large crosses devices), puts it into
the store and removes the temporary file. Any failure (bad input aside, which raises `InvalidInput` before
any work) raises `RenderError` with a one-line reason after the temporary file is gone, or `BlobWriteError` when
the blob store cannot be written (a full disk: the machine's failure, never recorded against the video), so a
failed render leaves nothing behind and the worker can retry.

Determinism: the same spec rendered by the same backend on the same kind of device with the same library
versions and `EncoderConfig` gives byte-identical files, hence the same content sha256 and blob URI; a
worker that runs twice on one request stores one blob.
"""

from __future__ import annotations

import os
import queue
import socket
import tempfile
import threading
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np

from generator.backends import VideoBackend, make_backend
from generator.encode import EncoderConfig, Progress, encode_mp4
from generator.errors import RenderError
from generator.script import SceneScript
from generator.spec import RenderSpec
from generator.watermark import apply_watermark
from kernel.blobstore import BlobRef, BlobStore, BlobWriteError
from kernel.errors import InvalidInput
from kernel.processes import is_running
from schemas.events import VideoRendered

VIDEO_CODEC = "h264"
AUDIO_CODEC = "aac"


@dataclass(frozen=True, slots=True)
class RenderOutcome:
    blob: BlobRef
    duration_s: float
    fps: int
    width: int
    height: int
    frame_count: int
    has_audio: bool
    generator_name: str
    generator_version: str
    model_hash: str
    device: str
    seed: int
    render_seconds: float
    script: SceneScript
    """Not part of the event: where cameos and sound events are, for the moderation step."""

    def to_payload(self) -> VideoRendered:
        """The `VideoRendered` event payload."""
        return VideoRendered.model_validate(
            {
                "content_sha256": self.blob.sha256,
                "blob_uri": self.blob.uri,
                "size_bytes": self.blob.size,
                "duration_s": self.duration_s,
                "fps": self.fps,
                "width": self.width,
                "height": self.height,
                "frame_count": self.frame_count,
                "has_audio": self.has_audio,
                "video_codec": VIDEO_CODEC,
                "audio_codec": AUDIO_CODEC,
                "generator": {
                    "name": self.generator_name,
                    "version": self.generator_version,
                    "model_hash": self.model_hash,
                },
                "device": self.device,
                "seed": self.seed,
                "render_seconds": self.render_seconds,
            }
        )


def _watermarked(chunks: Iterator[np.ndarray], fps: int) -> Iterator[np.ndarray]:
    first = 0
    for chunk in chunks:
        yield apply_watermark(chunk, first, fps)
        first += chunk.shape[0]


@dataclass(frozen=True, slots=True)
class _Failed:
    error: BaseException


_DONE = object()


def _prefetched(chunks: Iterator[np.ndarray], depth: int = 2) -> Generator[np.ndarray, None, None]:
    """Draw the next chunks in a thread while the encoder works on this one.

    torch (and the accelerator) and x264 both work outside the GIL, so drawing and encoding overlap; the
    queue bounds how many chunks wait in memory. Errors from the drawing thread are raised here, in order.
    """
    pending: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def offer(item: object) -> bool:
        while not stop.is_set():
            try:
                pending.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for chunk in chunks:
                if not offer(chunk):
                    return
        except BaseException as exc:  # handed to the consumer, which re-raises it
            offer(_Failed(exc))
            return
        offer(_DONE)

    worker = threading.Thread(target=produce, name="render-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            item = pending.get()
            if item is _DONE:
                return
            if isinstance(item, _Failed):
                raise item.error
            yield cast(np.ndarray, item)
    finally:
        stop.set()
        worker.join()


TEMP_PREFIX = ".render-"


def clean_stale_renders(root: Path) -> list[Path]:
    """Delete half-written renders that a killed worker on this host left in the blob store; returns them.

    A render's temporary file is named after its host and process, so only files of processes of this host
    that no longer run are removed: other workers' renders in progress, here or elsewhere, are left alone.
    """
    host = socket.gethostname()
    removed: list[Path] = []
    for path in Path(root).glob(f"{TEMP_PREFIX}*.mp4"):
        owner_host, _, rest = path.name[len(TEMP_PREFIX) :].rpartition("-")[0].rpartition("-")
        if owner_host != host or not rest.isdigit() or is_running(int(rest)):
            continue
        path.unlink(missing_ok=True)
        removed.append(path)
    return removed


def _temp_video(root: Path) -> Path:
    try:
        root.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(
            prefix=f"{TEMP_PREFIX}{socket.gethostname()}-{os.getpid()}-", suffix=".mp4", dir=root
        )
    except OSError as exc:
        raise BlobWriteError(f"cannot write in the blob store directory {root}: {exc.strerror or exc}") from exc
    os.close(fd)
    return Path(name)


def render_to_blob(
    spec: RenderSpec,
    store: BlobStore,
    backend: VideoBackend | None = None,
    *,
    encoder: EncoderConfig | None = None,
    progress: Progress | None = None,
) -> RenderOutcome:
    """Render `spec`, store the MP4 and return what the `VideoRendered` event records."""
    backend = backend if backend is not None else make_backend(spec.backend)
    if backend.name != spec.backend:
        raise InvalidInput(f"the spec asks for backend {spec.backend!r} but {backend.name!r} was given")
    started = time.perf_counter()
    temp = _temp_video(Path(store.root))
    frames: Generator[np.ndarray, None, None] | None = None
    try:
        video = backend.render(spec)
        if (video.width, video.height, video.fps, video.frame_count) != (
            spec.width,
            spec.height,
            spec.fps,
            spec.frame_count,
        ):
            raise RenderError(
                f"backend {backend.name!r} rendered {video.width}x{video.height} at {video.fps} fps, "
                f"{video.frame_count} frames; the spec asked for {spec.width}x{spec.height} at {spec.fps} fps, "
                f"{spec.frame_count} frames"
            )
        frames = _prefetched(iter(video.frames))
        encode_mp4(
            temp,
            width=spec.width,
            height=spec.height,
            fps=spec.fps,
            frame_count=spec.frame_count,
            chunks=_watermarked(frames, spec.fps),
            audio=video.audio,
            config=encoder,
            progress=progress,
        )
        blob = store.put_file(temp)
    except BlobWriteError as exc:  # the machine's failure, not the content's: never recorded against the video
        raise BlobWriteError(f"could not store the rendered video: {exc}") from exc
    except MemoryError as exc:
        raise RenderError(f"out of memory rendering a {spec.width}x{spec.height} clip: try a smaller size") from exc
    finally:
        if frames is not None:
            frames.close()
        temp.unlink(missing_ok=True)
    return RenderOutcome(
        blob=blob,
        duration_s=spec.exact_duration_s,
        fps=spec.fps,
        width=spec.width,
        height=spec.height,
        frame_count=spec.frame_count,
        has_audio=video.audio is not None,
        generator_name=backend.name,
        generator_version=backend.version,
        model_hash=backend.model_hash,
        device=backend.device,
        seed=spec.seed,
        render_seconds=round(time.perf_counter() - started, 3),
        script=video.script,
    )
