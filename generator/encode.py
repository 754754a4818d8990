"""H.264 + AAC in MP4 with PyAV, fed chunk by chunk so long clips never sit in memory whole.

The file is written with `movflags=faststart` (index before the media, so browsers start playing before the
download ends), yuv420p tagged as BT.601 limited range (what swscale's RGB conversion produces). The
encoder's thread count is fixed by `EncoderConfig.threads`, not left to the machine: x264's output depends
on it, and a fixed count gives the same file (and so the same content hash) on every worker.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from generator.audio import AudioTrack
from generator.errors import RenderError

if TYPE_CHECKING:
    from av.audio.stream import AudioStream
    from av.container import OutputContainer

Progress = Callable[[int, int], None]
"""Called with (frames encoded so far, total frames)."""


@dataclass(frozen=True, slots=True)
class EncoderConfig:
    crf: int = 20
    preset: str = "veryfast"
    threads: int = 4
    gop_seconds: float = 2.0
    audio_bitrate: int = 128_000
    audio_coder: str = "fast"
    """FFmpeg's AAC coder: "fast" is over three times quicker than the default "twoloop" and transparent
    for the synthesised tracks the reference backend makes; "twoloop" suits recorded sound."""


def _reason(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return " ".join(str(text).split())


def encode_mp4(
    path: Path,
    *,
    width: int,
    height: int,
    fps: int,
    frame_count: int,
    chunks: Iterable[np.ndarray],
    audio: AudioTrack | None,
    config: EncoderConfig | None = None,
    progress: Progress | None = None,
) -> None:
    """Write the MP4 to `path`; raise `RenderError` with a one-line reason on any failure."""
    import av

    config = config or EncoderConfig()
    try:
        container = av.open(str(path), mode="w", format="mp4", options={"movflags": "+faststart"})
    except (OSError, av.FFmpegError) as exc:
        raise RenderError(f"could not create the video file {path}: {_reason(exc)}") from exc
    try:
        video = container.add_stream(
            "libx264",
            rate=fps,
            options={
                "crf": str(config.crf),
                "preset": config.preset,
                "g": str(max(1, round(config.gop_seconds * fps))),
            },
        )
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        ctx = video.codec_context
        ctx.thread_count = config.threads
        ctx.time_base = Fraction(1, fps)
        ctx.color_range = 1
        ctx.colorspace = 6
        ctx.color_primaries = 6
        ctx.color_trc = 6
        sound = None
        if audio is not None:
            layout = "stereo" if audio.channels == 2 else "mono"
            sound = container.add_stream(
                "aac", rate=audio.sample_rate, layout=layout, options={"aac_coder": config.audio_coder}
            )
            sound.bit_rate = config.audio_bitrate
        written = 0
        audio_written = 0
        for chunk in chunks:
            if chunk.dtype != np.uint8 or chunk.ndim != 4 or chunk.shape[1:] != (height, width, 3):
                raise RenderError(
                    f"the backend produced frames of {chunk.dtype} {tuple(chunk.shape)}; "
                    f"expected uint8 (n, {height}, {width}, 3)"
                )
            if written + chunk.shape[0] > frame_count:
                raise RenderError(f"the backend produced more than the {frame_count} frames requested")
            for frame_array in chunk:
                frame = av.VideoFrame.from_ndarray(frame_array, format="rgb24")
                frame.pts = written
                container.mux(video.encode(frame))
                written += 1
            if sound is not None and audio is not None:
                until = min(audio.samples.shape[1], round(written * audio.sample_rate / fps))
                audio_written = _encode_audio(container, sound, audio, audio_written, until)
            if progress is not None:
                progress(written, frame_count)
        if written != frame_count:
            raise RenderError(f"the backend produced {written} frames; {frame_count} were requested")
        container.mux(video.encode())
        if sound is not None and audio is not None:
            _encode_audio(container, sound, audio, audio_written, audio.samples.shape[1])
            container.mux(sound.encode())
        container.close()
    except (OSError, av.FFmpegError) as exc:
        _close_quietly(container)
        raise RenderError(f"could not encode the video to {path}: {_reason(exc)}") from exc
    except BaseException:
        _close_quietly(container)
        raise


def _encode_audio(container: OutputContainer, stream: AudioStream, audio: AudioTrack, start: int, stop: int) -> int:
    """Encode samples start..stop, so the audio keeps pace with the video and the muxer can interleave."""
    import av

    if stop <= start:
        return start
    planes = np.ascontiguousarray(audio.samples[:, start:stop], dtype=np.float32)
    frame = av.AudioFrame.from_ndarray(planes, format="fltp", layout="stereo" if audio.channels == 2 else "mono")
    frame.sample_rate = audio.sample_rate
    frame.pts = start
    container.mux(stream.encode(frame))
    return stop


def _close_quietly(container: OutputContainer) -> None:
    with contextlib.suppress(Exception):
        container.close()
