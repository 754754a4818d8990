from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import pytest
from generator_testkit import correlation, decode_audio, decode_video_rgb, envelope, onsets, pattern_image

from generator.pipeline import render_to_blob
from generator.reference import ReferenceBackend
from generator.script import CameoAppearance
from generator.spec import RenderSpec
from kernel.blobstore import BlobStore

WIDTH, HEIGHT, FPS = 144, 256, 24


def _inner(box: tuple[int, int, int, int]) -> tuple[slice, slice]:
    """The middle half of a cameo box, well inside its soft elliptical mask."""
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    return slice(y0 + h // 4, y1 - h // 4), slice(x0 + w // 4, x1 - w // 4)


def _reference_inner(image: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    x0, y0, x1, y1 = box
    resized = cv2.resize(image, (x1 - x0, y1 - y0), interpolation=cv2.INTER_AREA)
    h, w = resized.shape[:2]
    return resized[h // 4 : h - h // 4, w // 4 : w - w // 4]


@dataclass(frozen=True)
class CameoRender:
    references: dict[str, np.ndarray]
    appearances: dict[str, CameoAppearance]
    frames: np.ndarray
    audio: np.ndarray
    sample_rate: int


@pytest.fixture(scope="module")
def cameo_render(tmp_path_factory: pytest.TempPathFactory, backend: ReferenceBackend) -> CameoRender:
    references = {"alice": pattern_image(180, 150, 0), "bob": pattern_image(120, 120, 1)}
    spec = RenderSpec(
        "no balls, a quiet studio", seed=3, duration_s=2.0, fps=FPS, width=WIDTH, height=HEIGHT, cameos=references
    )
    store = BlobStore(tmp_path_factory.mktemp("cameos"))
    outcome = render_to_blob(spec, store, backend)
    path = store.resolve(outcome.blob.uri)
    appearances = {a.cameo_id: a for a in outcome.script.cameos}
    audio, rate = decode_audio(path)
    return CameoRender(references, appearances, decode_video_rgb(path), audio, rate)


def test_script_places_each_cameo_inside_the_frame_at_a_third_of_the_width(cameo_render: CameoRender) -> None:
    appearances = cameo_render.appearances
    assert sorted(appearances) == ["alice", "bob"]
    alice, bob = appearances["alice"], appearances["bob"]
    assert alice.last_frame < bob.first_frame
    assert alice.first_frame > 0 and bob.last_frame < 47
    for appearance in (alice, bob):
        assert len(appearance.boxes) == appearance.last_frame - appearance.first_frame + 1
        for x0, y0, x1, y1 in appearance.boxes:
            assert 0 <= x0 < x1 <= WIDTH and 0 <= y0 < y1 <= HEIGHT
            assert x1 - x0 == 64
        assert len(set(appearance.boxes)) > 3
    x0, y0, x1, y1 = alice.boxes[0]
    assert (y1 - y0) == round(64 * 180 / 150)


def test_cameo_is_in_the_picture_exactly_when_the_script_says(cameo_render: CameoRender) -> None:
    references, appearances, frames = cameo_render.references, cameo_render.appearances, cameo_render.frames
    assert frames.shape == (48, HEIGHT, WIDTH, 3)
    for cameo_id, appearance in appearances.items():
        reference = references[cameo_id]
        for index in range(frames.shape[0]):
            box = appearance.box_at(index)
            if box is not None:
                rows, cols = _inner(box)
                score = correlation(frames[index, rows, cols], _reference_inner(reference, box))
                assert score > 0.85, (cameo_id, index, score)
            else:
                nearest = appearance.boxes[0] if index < appearance.first_frame else appearance.boxes[-1]
                rows, cols = _inner(nearest)
                score = correlation(frames[index, rows, cols], _reference_inner(reference, nearest))
                assert score < 0.5, (cameo_id, index, score)


def test_a_chime_sounds_when_each_cameo_enters(cameo_render: CameoRender) -> None:
    appearances, samples, rate = cameo_render.appearances, cameo_render.audio, cameo_render.sample_rate
    window = 0.002
    found = onsets(envelope(samples.mean(axis=0), rate, window), window, threshold=0.05)
    entrances = sorted(a.start_s for a in appearances.values())
    assert len(found) == len(entrances)
    for onset, start in zip(found, entrances, strict=True):
        assert abs(onset - start) <= 1.0 / FPS
