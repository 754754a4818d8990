from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from conftest import StoredClip, small
from generator_testkit import (
    decode_audio,
    decode_video_rgb,
    envelope,
    high_pass,
    onsets,
    top_level_boxes,
)

from generator.pipeline import render_to_blob
from generator.reference import ReferenceBackend, renderer_hash
from generator.watermark import watermark_box, watermark_mask
from kernel.blobstore import BlobStore

PAYLOAD_KEYS = {
    "content_sha256",
    "blob_uri",
    "size_bytes",
    "duration_s",
    "fps",
    "width",
    "height",
    "frame_count",
    "has_audio",
    "video_codec",
    "audio_codec",
    "generator",
    "device",
    "seed",
    "render_seconds",
}


def test_same_seed_gives_identical_frames_and_file_and_another_seed_differs(
    backend: ReferenceBackend, tmp_path: Path
) -> None:
    spec = small("a red ball and a green box", seed=21)
    first = backend.render(spec).collect_frames()
    again = backend.render(small("a red ball and a green box", seed=21)).collect_frames()
    assert first.shape == (24, 256, 144, 3) and first.dtype == np.uint8
    assert np.array_equal(first, again)
    other = backend.render(small("a red ball and a green box", seed=22)).collect_frames()
    assert not np.array_equal(first, other)

    store_a, store_b = BlobStore(tmp_path / "a"), BlobStore(tmp_path / "b")
    a = render_to_blob(spec, store_a, backend)
    b = render_to_blob(spec, store_b, backend)
    assert a.blob.sha256 == b.blob.sha256
    assert hashlib.sha256(store_a.resolve(a.blob.uri).read_bytes()).hexdigest() == a.blob.sha256
    c = render_to_blob(small(spec.prompt, seed=22), store_a, backend)
    assert c.blob.sha256 != a.blob.sha256


def test_payload_has_exactly_the_event_fields(bouncing_clip: StoredClip) -> None:
    payload = bouncing_clip.outcome.to_payload().model_dump(mode="json")
    assert set(payload) == PAYLOAD_KEYS
    assert payload["blob_uri"] == f"blob:sha256:{payload['content_sha256']}"
    assert payload["size_bytes"] == bouncing_clip.path.stat().st_size
    assert (payload["width"], payload["height"], payload["fps"], payload["frame_count"]) == (144, 256, 24, 48)
    assert payload["duration_s"] == 2.0 and payload["has_audio"] is True and payload["seed"] == 8
    assert (payload["video_codec"], payload["audio_codec"], payload["device"]) == ("h264", "aac", "cpu")
    assert payload["generator"] == {"name": "reference", "version": "1.0.0", "model_hash": renderer_hash()}
    assert len(renderer_hash()) == 64 and payload["render_seconds"] > 0


def test_file_decodes_in_opencv_with_the_requested_picture(bouncing_clip: StoredClip) -> None:
    import cv2

    capture = cv2.VideoCapture(str(bouncing_clip.path))
    try:
        assert capture.isOpened()
        assert capture.get(cv2.CAP_PROP_FRAME_WIDTH) == 144
        assert capture.get(cv2.CAP_PROP_FRAME_HEIGHT) == 256
        assert capture.get(cv2.CAP_PROP_FPS) == pytest.approx(24.0)
        count = 0
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            assert frame.shape == (256, 144, 3)
            count += 1
    finally:
        capture.release()
    assert count == 48


def test_file_is_h264_yuv420p_with_aac_stereo_48k_and_faststart(bouncing_clip: StoredClip) -> None:
    import av

    with av.open(str(bouncing_clip.path)) as container:
        video = container.streams.video[0]
        audio = container.streams.audio[0]
        assert video.codec_context.name == "h264"
        assert video.codec_context.pix_fmt == "yuv420p"
        assert (video.codec_context.width, video.codec_context.height) == (144, 256)
        assert video.average_rate == 24
        assert audio.codec_context.name == "aac"
        assert audio.sample_rate == 48_000 and audio.channels == 2
        assert sum(1 for _ in container.decode(video=0)) == 48
    boxes = top_level_boxes(bouncing_clip.path)
    assert boxes.index("moov") < boxes.index("mdat")


def test_audio_onsets_line_up_with_bounces_within_a_frame(bouncing_clip: StoredClip) -> None:
    script = bouncing_clip.outcome.script
    bounces = script.bounce_times
    assert len(bounces) >= 4
    frame = 1.0 / script.fps
    samples, rate = decode_audio(bouncing_clip.path)
    window = 0.001
    clicks = envelope(high_pass(samples.mean(axis=0), rate, 5000.0), rate, window)
    found = onsets(clicks, window, threshold=0.008)
    clusters: list[list[float]] = []
    for time in bounces:
        if clusters and time - clusters[-1][-1] < frame:
            clusters[-1].append(time)
        else:
            clusters.append([time])
    for cluster in clusters:
        assert any(abs(onset - cluster[0]) <= frame for onset in found), (cluster, found)
    for onset in found:
        assert any(abs(onset - time) <= frame for time in bounces), (onset, bounces)
    assert len(found) >= len(clusters)


def test_quiet_bed_plays_between_events(bouncing_clip: StoredClip) -> None:
    samples, rate = decode_audio(bouncing_clip.path)
    level = envelope(samples.mean(axis=0), rate, 0.02)
    middle = level[10:-10]
    assert np.median(middle) > 1e-4
    assert np.median(middle) < 0.05


def test_visible_watermark_is_on_every_frame_and_moves(bouncing_clip: StoredClip) -> None:
    frames = decode_video_rgb(bouncing_clip.path).astype(np.float64)
    mask = watermark_mask(144, 256)
    boxes = [watermark_box(i, 24, 144, 256) for i in range(len(frames))]
    assert len(set(boxes)) > 10
    for index, (x0, y0, x1, y1) in enumerate(boxes):
        region = frames[index, y0:y1, x0:x1].mean(axis=2)
        text = region[mask[: y1 - y0, : x1 - x0] > 0.6].mean()
        around = region[mask[: y1 - y0, : x1 - x0] < 0.02].mean()
        assert text - around > 25, index


def test_prompt_is_drawn_as_a_caption(backend: ReferenceBackend) -> None:
    with_words = backend.render(small("no balls in the studio, only words", 4, 0.5, fps=4)).collect_frames()
    other_words = backend.render(small("no balls in the studio, other text", 4, 0.5, fps=4)).collect_frames()
    top = slice(0, 60)
    assert np.abs(with_words[:, top].astype(int) - other_words[:, top].astype(int)).max() > 100
    assert np.array_equal(with_words[:, 100:], other_words[:, 100:])


def test_blood_prompt_adds_red_splatter(backend: ReferenceBackend) -> None:
    clean = backend.render(small("three grey balls", 6, 2.0, fps=12)).collect_frames()
    bloody = backend.render(small("three grey balls, blood", 6, 2.0, fps=12))
    frames = bloody.collect_frames()
    assert bloody.script.content_flags == ("splatter",)

    def red_pixels(video: np.ndarray) -> int:
        r, g, b = (video[..., i].astype(int) for i in range(3))
        return int(((r > 90) & (r > 3 * g) & (r > 3 * b)).sum())

    assert red_pixels(frames) > red_pixels(clean) + 200
