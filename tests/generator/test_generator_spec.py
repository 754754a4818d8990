from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from generator.spec import MAX_PROMPT_CHARS, RenderSpec
from kernel.errors import InvalidInput


def spec(**changes: Any) -> RenderSpec:
    fields: dict[str, Any] = {"prompt": "three red balls", "seed": 1, "width": 144, "height": 256}
    fields.update(changes)
    return RenderSpec(**fields)


def test_defaults_are_vertical_four_seconds_at_24_fps() -> None:
    made = RenderSpec("a ball", seed=0)
    assert (made.width, made.height, made.fps, made.duration_s) == (576, 1024, 24, 4.0)
    assert made.frame_count == 96 and made.backend == "reference"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"prompt": ""}, "prompt is empty"),
        ({"prompt": "   \n\t "}, "prompt is empty"),
        ({"prompt": "x" * (MAX_PROMPT_CHARS + 1)}, "limit is 1000"),
        ({"prompt": 42}, "prompt must be text"),
        ({"width": 32}, "width 32 px is out of range"),
        ({"height": 4320}, "height 4320 px is out of range"),
        ({"width": 145}, "odd"),
        ({"height": 255}, "odd"),
        ({"width": 144.0}, "whole number"),
        ({"duration_s": 0.1}, "duration"),
        ({"duration_s": 61}, "duration"),
        ({"duration_s": float("nan")}, "duration"),
        ({"duration_s": True}, "duration"),
        ({"fps": 0}, "fps"),
        ({"fps": 61}, "fps"),
        ({"fps": 23.976}, "fps"),
        ({"seed": -1}, "seed"),
        ({"seed": 2**63}, "seed"),
        ({"seed": True}, "seed"),
        ({"seed": "7"}, "seed"),
    ],
)
def test_bad_input_is_refused_with_a_clear_message(changes: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidInput, match=message) as caught:
        spec(**changes)
    assert "\n" not in str(caught.value)


def test_limits_themselves_are_accepted() -> None:
    spec(prompt="x" * MAX_PROMPT_CHARS, seed=2**63 - 1, width=64, height=2160, duration_s=0.5, fps=1)
    spec(duration_s=60, fps=60)


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (np.zeros((64, 64), np.uint8), "HxWx3 uint8"),
        (np.zeros((64, 64, 4), np.uint8), "HxWx3 uint8"),
        (np.zeros((64, 64, 3), np.float32), "HxWx3 uint8"),
        (np.zeros((8, 64, 3), np.uint8), "between 16 and 4096"),
        ("face.png", "HxWx3 uint8"),
    ],
)
def test_bad_cameo_images_are_refused(image: object, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        spec(cameos={"alice": image})


def test_too_many_cameos_for_a_short_clip_are_refused() -> None:
    images = {f"c{i}": np.zeros((32, 32, 3), np.uint8) for i in range(3)}
    with pytest.raises(InvalidInput, match="at least 6 frames"):
        spec(cameos=images, duration_s=0.5, fps=10)
    with pytest.raises(InvalidInput, match="at most 8"):
        spec(cameos={f"c{i}": np.zeros((32, 32, 3), np.uint8) for i in range(9)})


def test_params_round_trip_through_json_without_the_prompt() -> None:
    original = spec(duration_s=1.5, fps=30, seed=99)
    params = original.to_params()
    assert "prompt" not in params
    assert {"duration_s", "fps", "width", "height", "backend", "seed"} <= params.keys()
    restored = RenderSpec.from_params(json.loads(json.dumps(params)), prompt="another prompt")
    assert restored.to_params() == params
    assert restored.prompt == "another prompt"


def test_unknown_or_incomplete_params_are_refused() -> None:
    params = spec().to_params()
    with pytest.raises(InvalidInput, match="unknown generation parameters: steps"):
        RenderSpec.from_params({**params, "steps": 3}, prompt="p")
    del params["seed"]
    with pytest.raises(InvalidInput, match="no seed"):
        RenderSpec.from_params(params, prompt="p")


def test_remix_keeps_the_parents_seed_and_picture_and_takes_the_new_prompt() -> None:
    parent = spec(seed=1234, duration_s=2.0, fps=30)
    child = RenderSpec.remix(parent.to_params(), prompt="now with blue boxes")
    assert child.prompt == "now with blue boxes"
    assert (child.seed, child.duration_s, child.fps, child.width, child.height) == (1234, 2.0, 30, 144, 256)
    assert child.parent is not None and child.parent["seed"] == 1234
    assert child.to_params()["parent"] == parent.to_params()
    reseeded = RenderSpec.remix(parent.to_params(), prompt="again", seed=5)
    assert reseeded.seed == 5
    grandchild = RenderSpec.remix(child.to_params(), prompt="third")
    assert "parent" not in grandchild.to_params()["parent"]


def test_frame_count_is_the_duration_rounded_to_whole_frames() -> None:
    assert spec(duration_s=1.0, fps=24).frame_count == 24
    assert spec(duration_s=0.5, fps=1).frame_count == 1
    odd = spec(duration_s=1.01, fps=24)
    assert odd.frame_count == 24 and odd.exact_duration_s == 1.0
