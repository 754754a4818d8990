from __future__ import annotations

import contextlib
from pathlib import Path
from uuid import UUID, uuid4

import numpy as np
import pytest

from devkit.sample_video import SampleClip, render_frames
from provenance.credentials import watermark as wm
from provenance.credentials.errors import WatermarkError
from tests.credentials.support import reencode, splice, top_level_boxes

PAYLOAD = bytes.fromhex("0123456789abcdef")
OTHER_PAYLOAD = bytes.fromhex("fedcba9876543210")


def _luma(width: int, height: int, seed: int = 0) -> np.ndarray:
    import cv2

    frame = next(render_frames(SampleClip(width=width, height=height, seconds=0.05, seed=seed)))
    return np.asarray(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY))


@pytest.mark.parametrize("size", [(160, 288), (288, 160), (320, 320)])
def test_marked_frame_reads_back_at_its_own_and_at_half_resolution(size: tuple[int, int]) -> None:
    import cv2

    width, height = size
    luma = _luma(width, height)
    marked = wm.FrameMarker(PAYLOAD).mark(luma)
    assert marked.shape == luma.shape and marked.dtype == np.uint8
    for plane in (marked, cv2.resize(marked, (width // 2, height // 2), interpolation=cv2.INTER_AREA)):
        message, payload = wm.decode_soft(wm.vote(wm.read_luma(plane)))
        assert payload == PAYLOAD
        assert np.array_equal(message, wm.message_bits(PAYLOAD))


def test_marking_is_invisible_by_psnr() -> None:
    luma = _luma(160, 288)
    marked = wm.FrameMarker(PAYLOAD).mark(luma)
    mse = np.mean((marked.astype(float) - luma) ** 2)
    assert 10 * np.log10(255**2 / mse) > 40


def test_convolutional_code_corrects_wrong_coded_bits() -> None:
    coded = wm.coded_bits(PAYLOAD)
    soft = 1.0 - 2.0 * coded.astype(float)
    rng = np.random.default_rng(5)
    wrong = rng.choice(len(soft), size=12, replace=False)
    soft[wrong] *= -1  # twelve coded bits voted the wrong way
    assert np.count_nonzero((soft < 0) != coded) == 12
    _, payload = wm.decode_soft(soft)
    assert payload == PAYLOAD


def test_crc_rejects_a_message_that_was_not_marked() -> None:
    rng = np.random.default_rng(9)
    accepted = sum(wm.decode_soft(rng.normal(size=wm.CODED_BITS))[1] is not None for _ in range(200))
    assert accepted == 0


def test_soft_binding_is_derived_from_the_video_id() -> None:
    video_id = UUID("6f1d950c-6bdc-4231-a8ac-1d570ba8fda5")
    alg, value = wm.soft_binding_for(video_id)
    assert alg == wm.ALG
    assert wm.soft_binding_for(video_id) == (alg, value)
    assert wm.payload_from_value(value) == wm.payload_for(video_id)
    assert len(wm.payload_for(video_id)) == wm.PAYLOAD_BYTES
    assert wm.soft_binding_for(uuid4())[1] != value
    assert wm.payload_from_value("not base64!") is None
    assert wm.payload_from_value("AAAA") is None


def test_embed_keeps_frames_and_audio_and_writes_faststart(clip: Path, tmp_path: Path) -> None:
    import av

    report = wm.embed_watermark(clip, tmp_path / "marked.mp4", PAYLOAD)
    with av.open(str(clip)) as original, av.open(str(tmp_path / "marked.mp4")) as marked:
        assert [s.type for s in marked.streams] == ["video", "audio"]
        assert marked.streams.audio[0].codec_context.name == "aac"
        assert sum(1 for _ in marked.decode(video=0)) == sum(1 for _ in original.decode(video=0)) == report.frames
    kinds = [kind for _, _, kind in top_level_boxes((tmp_path / "marked.mp4").read_bytes())]
    assert kinds.index(b"moov") < kinds.index(b"mdat")
    assert report.audio_copied and report.psnr_db > 40
    assert (report.width, report.height) == (160, 288)
    assert [p.name for p in tmp_path.iterdir()] == ["marked.mp4"]
    assert wm.decode_watermark(tmp_path / "marked.mp4") == PAYLOAD


def test_mark_survives_h264_reencoding(clip: Path, tmp_path: Path) -> None:
    wm.embed_watermark(clip, tmp_path / "marked.mp4", PAYLOAD)
    for crf in (18, 23):
        copy = reencode(tmp_path / "marked.mp4", tmp_path / f"crf{crf}.mp4", crf=crf)
        assert wm.decode_watermark(copy) == PAYLOAD


def test_unmarked_video_has_no_watermark(clip: Path) -> None:
    reading = wm.read_watermark(clip)
    assert reading.frames > wm.EARLY_VOTES[-1]  # no early vote checked: every sampled frame was read
    assert reading.payload is None


def test_a_copy_that_kept_its_mark_is_read_from_the_first_few_frames_of_each_window(clip: Path, tmp_path: Path) -> None:
    wm.embed_watermark(clip, tmp_path / "marked.mp4", PAYLOAD)
    reading = wm.read_watermark(tmp_path / "marked.mp4")
    assert reading.payloads == (PAYLOAD,) and reading.payload == PAYLOAD
    assert reading.frames == wm.DEFAULT_CONFIG.windows * wm.EARLY_VOTES[0]


def test_every_video_spliced_into_a_clip_is_found_in_the_order_it_plays(
    clip: Path, second_clip: Path, tmp_path: Path
) -> None:
    """Half a second of one marked video in front of another: both payloads come back, the intro's first."""
    first = wm.embed_watermark(clip, tmp_path / "first.mp4", OTHER_PAYLOAD)
    wm.embed_watermark(second_clip, tmp_path / "second.mp4", PAYLOAD)
    spliced = splice(tmp_path / "spliced.mp4", (tmp_path / "first.mp4", 12), (tmp_path / "second.mp4", None))
    assert first.frames > 12
    assert wm.read_watermark(spliced).payloads == (OTHER_PAYLOAD, PAYLOAD)
    assert wm.decode_watermarks(spliced) == (OTHER_PAYLOAD, PAYLOAD)
    assert wm.decode_watermark(spliced) == OTHER_PAYLOAD  # the first found, as before


def test_an_intro_longer_than_the_first_seconds_does_not_hide_the_mark(clip: Path, tmp_path: Path) -> None:
    wm.embed_watermark(clip, tmp_path / "marked.mp4", PAYLOAD)
    with_intro = splice(tmp_path / "intro.mp4", (None, 130), (tmp_path / "marked.mp4", None))
    assert wm.decode_watermarks(with_intro) == (PAYLOAD,)


@pytest.mark.parametrize("total", [0, 5, 36, 48, 130, 480, 14_400, 10**9])
def test_windows_spread_over_the_whole_clip_at_a_cost_that_does_not_grow_with_it(total: int) -> None:
    config = wm.DEFAULT_CONFIG
    windows = wm._sample_plan(total, config)
    frames = [index for window in windows for index in window]
    assert 0 < len(frames) <= config.sample_frames and len(windows) <= config.windows
    assert frames == sorted(set(frames))  # read forward only, never a frame twice
    assert frames[0] == 0
    length = total or config.scan_frames  # an unknown length: the first frames, as far as they go
    assert frames[-1] < length
    if length >= config.windows * config.sample_frames:
        assert frames[-1] >= length - config.scan_frames // config.windows  # the last window reaches the end


def test_opencv_hands_back_exactly_the_luma_plane_pyav_decodes(clip: Path, tmp_path: Path) -> None:
    marked = tmp_path / "marked.mp4"
    wm.embed_watermark(clip, marked, PAYLOAD)
    capture = wm._luma_capture(marked)
    assert capture is not None  # the fast path is the one taken for H.264 in yuv420p
    capture.release()
    wanted = [0, 1, 5, 17, 30, 33]  # forward, with gaps: decoded through
    with contextlib.closing(wm._opencv_frames(marked)) as opencv:
        assert opencv is not None
        through_opencv = [opencv.luma_at(index) for index in wanted]
    with contextlib.closing(wm._PyAvFrames(marked)) as pyav:
        in_order = [pyav.luma_at(index) for index in wanted]
    assert all(plane is not None for plane in through_opencv)
    for a, b in zip(through_opencv, in_order, strict=True):
        assert np.array_equal(a, b)


def _with_keyframes_every(source: Path, target: Path, gop: int) -> Path:
    import av

    with av.open(str(source)) as src, av.open(str(target), "w", format="mp4") as dst:
        out = dst.add_stream("libx264", rate=src.streams.video[0].average_rate)
        assert isinstance(out, av.VideoStream)
        out.width, out.height, out.pix_fmt = 160, 288, "yuv420p"
        out.options = {"crf": "18", "g": str(gop), "keyint_min": str(gop), "sc_threshold": "0"}
        for frame in src.decode(video=0):
            dst.mux(out.encode(frame))
        dst.mux(out.encode(None))
    return target


def test_a_long_clip_is_read_from_the_keyframe_at_or_before_each_window(
    clip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A window far ahead is reached by seeking to a keyframe near it, whose frames are read instead of its exact
    ones: the same planes a decode from the start hands back, and the mark reads from them."""
    wm.embed_watermark(clip, tmp_path / "marked.mp4", PAYLOAD)
    gop10 = _with_keyframes_every(tmp_path / "marked.mp4", tmp_path / "gop10.mp4", 10)
    with contextlib.closing(wm._PyAvFrames(gop10, seek=True)) as pyav:
        window = pyav.window(range(25, 31), limit=35)
        assert window == range(20, 26)  # keyframes at 0, 10, 20, 30: the one at or before frame 25
        seeked = [pyav.luma_at(index) for index in window]
        assert pyav.window(range(28, 34), limit=35) == range(28, 34)  # a few frames ahead: decoded through
    with contextlib.closing(wm._opencv_frames(gop10)) as opencv:
        assert opencv is not None
        from_start = [opencv.luma_at(index) for index in range(20, 26)]
    for a, b in zip(seeked, from_start, strict=True):
        assert a is not None and np.array_equal(a, b)
    monkeypatch.setattr(wm, "_SEEK_FROM", 12)  # read it as a long clip is
    reading = wm.read_watermark(gop10)
    assert reading.payloads == (PAYLOAD,)
    assert reading.frames == wm.DEFAULT_CONFIG.windows * wm.EARLY_VOTES[0]


def test_a_pixel_format_opencv_cannot_hand_back_is_read_through_pyav(clip: Path, tmp_path: Path) -> None:
    import av

    wm.embed_watermark(clip, tmp_path / "marked.mp4", PAYLOAD)
    full_chroma = tmp_path / "yuv444.mp4"
    with av.open(str(tmp_path / "marked.mp4")) as src, av.open(str(full_chroma), "w", format="mp4") as dst:
        out = dst.add_stream("libx264", rate=src.streams.video[0].average_rate)
        assert isinstance(out, av.VideoStream)
        out.width, out.height, out.pix_fmt, out.options = 160, 288, "yuv444p", {"crf": "18"}
        for frame in src.decode(video=0):
            dst.mux(out.encode(frame.reformat(format="yuv444p")))
        dst.mux(out.encode(None))
    assert wm._luma_capture(full_chroma) is None
    assert wm.decode_watermark(full_chroma) == PAYLOAD


def test_bad_inputs_raise_watermark_error(tmp_path: Path) -> None:
    text = tmp_path / "notes.mp4"
    text.write_text("#EXTM3U\nhttp://127.0.0.1:9/segment.ts\n")
    with pytest.raises(WatermarkError, match="not in a video container"):
        wm.decode_watermark(text)
    with pytest.raises(WatermarkError, match="no such video"):
        wm.decode_watermark(tmp_path / "missing.mp4")
    with pytest.raises(WatermarkError, match="bytes"):
        wm.embed_watermark(tmp_path / "missing.mp4", tmp_path / "out.mp4", b"short")
    assert not (tmp_path / "out.mp4").exists()


def test_the_algorithm_name_has_the_form_the_soft_binding_list_requires_and_old_bindings_still_resolve() -> None:
    import re

    assert re.fullmatch(r"[a-zA-Z0-9]+(\.[a-zA-Z0-9]+)+", wm.ALG)
    value = wm.soft_binding_value(wm.payload_for(uuid4()))
    keys = wm.binding_keys(wm.ALG, value)
    assert keys[0] == f"{wm.ALG}:{value}" and all(f"{alg}:{value}" in keys for alg in wm.FORMER_ALGS)
    assert wm.binding_keys("com.example.other", value) == [f"com.example.other:{value}"]
