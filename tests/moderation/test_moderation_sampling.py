"""Frame sampling: steady rate plus scene cuts, timestamps, batches, and refusal of bad media."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from devkit.clip import synthesize_scene
from kernel.errors import InvalidInput
from moderation.errors import UnreadableMedia
from moderation.sampling import SamplingConfig, VideoSampler, load_image

VideoWriter = Callable[..., Path]


def two_shot_frames(count: int = 32, cut_at: int = 12) -> list[np.ndarray]:
    return [synthesize_scene(0 if i < cut_at else 1, 160, 96) for i in range(count)]


def collect(path: Path, config: SamplingConfig | None = None) -> tuple[VideoSampler, list[list[tuple[float, str]]]]:
    sampler = VideoSampler(path, config)
    batches = [[(s.timestamp_s, str(s.reason)) for s in batch] for batch in sampler.batches()]
    return sampler, batches


def test_samples_at_the_rate_plus_scene_cuts_with_timestamps(tmp_path: Path, h264: VideoWriter) -> None:
    video = h264(tmp_path / "two-shots.mp4", two_shot_frames(), fps=8)
    sampler, batches = collect(video)
    samples = [s for batch in batches for s in batch]
    # each second, each cut, and the last frame: what follows the last whole second is seen too
    assert samples == [(0.0, "rate"), (1.0, "rate"), (1.5, "scene"), (2.0, "rate"), (3.0, "rate"), (3.875, "rate")]
    assert sampler.frames_read == 32
    assert sampler.samples_taken == 6
    assert sampler.duration_s == pytest.approx(4.0)


def test_rate_and_batch_size_are_configurable(tmp_path: Path, h264: VideoWriter) -> None:
    video = h264(tmp_path / "two-shots.mp4", two_shot_frames(), fps=8)
    _, batches = collect(video, SamplingConfig(fps=2.0, batch_size=3, scene_threshold=2.0))
    assert [len(b) for b in batches] == [3, 3, 3]
    assert [t for batch in batches for t, _ in batch] == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 3.875]


def test_samples_are_rgb(tmp_path: Path, h264: VideoWriter) -> None:
    red = np.zeros((64, 64, 3), np.uint8)
    red[..., 0] = 220
    video = h264(tmp_path / "red.mp4", [red] * 4, fps=4)
    (batch,) = list(VideoSampler(video).batches())
    pixel = batch[0].image[32, 32].astype(int)
    assert pixel[0] > 180 and pixel[1] < 60 and pixel[2] < 60


def test_not_a_video(tmp_path: Path) -> None:
    bogus = tmp_path / "notes.mp4"
    bogus.write_text("this is text, not a video")
    with pytest.raises(UnreadableMedia, match=r"cannot open notes\.mp4"):
        VideoSampler(bogus)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="no such media file"):
        VideoSampler(tmp_path / "absent.mp4")


def test_truncated_video_without_its_index(tmp_path: Path, h264: VideoWriter) -> None:
    video = h264(tmp_path / "full.mp4", two_shot_frames(), fps=8)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(video.read_bytes()[: video.stat().st_size * 2 // 3])
    with pytest.raises(UnreadableMedia):
        VideoSampler(cut)


def test_truncated_streamable_video_is_refused_after_decoding(tmp_path: Path, h264: VideoWriter) -> None:
    video = h264(tmp_path / "full.mp4", two_shot_frames(), fps=8, container_options={"movflags": "faststart"})
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(video.read_bytes()[: video.stat().st_size * 2 // 3])
    sampler = VideoSampler(cut)
    with pytest.raises(UnreadableMedia, match=r"truncated or corrupt: decoded \d+ of 32 frames"):
        list(sampler.batches())


def test_video_with_no_frames(tmp_path: Path, h264: VideoWriter) -> None:
    video = h264(tmp_path / "full.mp4", two_shot_frames(), fps=8, container_options={"movflags": "faststart"})
    data = video.read_bytes()
    header_only = tmp_path / "empty.mp4"
    header_only.write_bytes(data[: data.index(b"mdat") + 4])
    with pytest.raises(UnreadableMedia, match="has no decodable frames"):
        list(VideoSampler(header_only).batches())


def test_huge_resolution_is_refused_before_decoding(tmp_path: Path, h264: VideoWriter) -> None:
    wide = h264(tmp_path / "wide.mp4", [np.zeros((16, 4160, 3), np.uint8)] * 2, fps=2)
    with pytest.raises(InvalidInput, match="4160x16; the limit is 4096 px"):
        VideoSampler(wide)
    small = h264(tmp_path / "small.mp4", two_shot_frames(4), fps=4)
    with pytest.raises(InvalidInput, match="the limit is 100 px"):
        VideoSampler(small, SamplingConfig(max_side_px=100))


def test_sample_budget(tmp_path: Path, h264: VideoWriter) -> None:
    video = h264(tmp_path / "two-shots.mp4", two_shot_frames(), fps=8)
    with pytest.raises(InvalidInput, match="more than 2 samples"):
        list(VideoSampler(video, SamplingConfig(max_samples=2)).batches())


def test_large_samples_are_downscaled(tmp_path: Path, h264: VideoWriter) -> None:
    video = h264(tmp_path / "big.mp4", [synthesize_scene(3, 640, 360)] * 2, fps=2)
    (batch,) = list(VideoSampler(video, SamplingConfig(max_sample_side_px=320)).batches())
    assert batch[0].image.shape == (180, 320, 3)


def test_images_are_checked_before_decoding(tmp_path: Path) -> None:
    from PIL import Image

    Image.fromarray(np.zeros((10, 5000, 3), np.uint8)).save(tmp_path / "wide.png")
    with pytest.raises(InvalidInput, match="5000x10"):
        load_image(tmp_path / "wide.png")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    with pytest.raises(UnreadableMedia, match=r"cannot read image broken\.png"):
        load_image(tmp_path / "broken.png")
    Image.fromarray(synthesize_scene(1, 40, 30)).save(tmp_path / "ok.png")
    assert load_image(tmp_path / "ok.png").shape == (30, 40, 3)


def test_a_short_clip_is_seen_to_its_end(tmp_path: Path, h264: VideoWriter) -> None:
    """Whatever happens after the first frame of a one-second clip is sampled too (it was judged by frame 0)."""
    calm, then = np.zeros((64, 64, 3), np.uint8), np.full((64, 64, 3), 200, np.uint8)
    video = h264(tmp_path / "short.mp4", [calm] * 20 + [then] * 4, fps=24)
    _, batches = collect(video, SamplingConfig(scene_threshold=2.0))  # no scene cut to save the day
    assert [t for batch in batches for t, _ in batch] == [0.0, pytest.approx(23 / 24)]
