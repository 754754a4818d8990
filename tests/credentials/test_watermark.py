from __future__ import annotations

from pathlib import Path
from uuid import UUID, uuid4

import numpy as np
import pytest

from devkit.sample_video import SampleClip, render_frames
from provenance.credentials import watermark as wm
from provenance.credentials.errors import WatermarkError
from tests.credentials.support import reencode, top_level_boxes

PAYLOAD = bytes.fromhex("0123456789abcdef")


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


def test_a_copy_that_kept_its_mark_is_read_from_the_first_few_frames(clip: Path, tmp_path: Path) -> None:
    wm.embed_watermark(clip, tmp_path / "marked.mp4", PAYLOAD)
    reading = wm.read_watermark(tmp_path / "marked.mp4")
    assert reading.payload == PAYLOAD and reading.frames == wm.EARLY_VOTES[0]


def test_opencv_hands_back_exactly_the_luma_plane_pyav_decodes(clip: Path, tmp_path: Path) -> None:
    marked = tmp_path / "marked.mp4"
    wm.embed_watermark(clip, marked, PAYLOAD)
    config = wm.WatermarkConfig(sample_frames=6)
    capture = wm._luma_capture(marked)
    assert capture is not None  # the fast path is the one taken for H.264 in yuv420p
    capture.release()
    through_opencv = list(wm._sampled_lumas(marked, config))
    through_pyav = list(wm._sampled_lumas_pyav(marked, config))
    assert len(through_opencv) == len(through_pyav) == 6
    assert all(np.array_equal(a, b) for a, b in zip(through_opencv, through_pyav, strict=True))


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
