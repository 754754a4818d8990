from __future__ import annotations

import numpy as np

from generator.physics import simulate
from generator.scene_plan import COLOURS, plan_scene


def test_prompt_words_pick_counts_kinds_and_colours() -> None:
    plan = plan_scene("three red balls and a blue box", seed=3, width=576, height=1024)
    kinds = [(obj.kind, obj.colour) for obj in plan.objects]
    assert kinds == [("ball", COLOURS["red"])] * 3 + [("box", COLOURS["blue"])]
    assert len(plan_scene("7 marbles", 3, 576, 1024).objects) == 7
    assert len(plan_scene("no balls, an empty stage", 3, 576, 1024).objects) == 0
    assert len(plan_scene("a sunset", 3, 576, 1024).objects) == 4


def test_setting_words_pick_the_background_and_other_words_seed_it() -> None:
    night = plan_scene("balls at night", 3, 576, 1024)
    sunset = plan_scene("balls at sunset", 3, 576, 1024)
    assert night.sky_top != sunset.sky_top
    assert plan_scene("a cat", 3, 576, 1024).sky_top != plan_scene("a dog", 3, 576, 1024).sky_top


def test_blood_and_gore_words_turn_on_splatter() -> None:
    assert plan_scene("balls, blood everywhere", 1, 576, 1024).splatter
    assert plan_scene("GORY boxes", 1, 576, 1024).splatter
    assert not plan_scene("bloodhound balls", 1, 576, 1024).splatter
    motion = simulate(plan_scene("three balls, gore", 1, 576, 1024), 24, 72, 1)
    assert motion.particles is not None and len(motion.particles) > 0
    assert (motion.particles.land_s >= motion.particles.spawn_s).all()


def test_blood_words_add_splatter_and_change_nothing_else() -> None:
    """A policy head must learn the blood, not a background that the word "gore" happened to pick."""
    plain = plan_scene("three balls", 5, 288, 512)
    bloody = plan_scene("blood and gore everywhere, three balls", 5, 288, 512)
    assert bloody.splatter and not plain.splatter
    assert (bloody.sky_top, bloody.sky_bottom, bloody.floor) == (plain.sky_top, plain.sky_bottom, plain.floor)
    assert bloody.objects == plain.objects


def test_objects_stay_inside_the_frame_and_bounce_at_the_reported_times() -> None:
    plan = plan_scene("four balls and two boxes", 5, 576, 1024)
    fps, frames = 24, 24 * 6
    motion = simulate(plan, fps, frames, 5)
    floor = plan.world.floor_fraction * plan.world_height
    sizes = np.array([obj.size for obj in plan.objects])
    x, y = motion.positions[..., 0], motion.positions[..., 1]
    assert (x >= sizes - 1e-9).all() and (x <= plan.world_width - sizes + 1e-9).all()
    assert (y >= sizes - 1e-9).all() and (y <= floor - sizes + 1e-9).all()
    floor_hits = [hit for hit in motion.impacts if hit.surface == "floor"]
    assert len(floor_hits) >= 6
    for hit in floor_hits:
        frame = round(hit.time_s * fps)
        if frame < frames:
            gap = floor - sizes[hit.object_index] - y[frame, hit.object_index]
            assert gap < hit.speed / fps + 1e-9
    assert all(0 <= hit.time_s <= frames / fps for hit in motion.impacts)
    times = [hit.time_s for hit in motion.impacts]
    assert times == sorted(times)


def test_same_seed_same_motion_and_a_remix_keeps_shared_objects() -> None:
    a = simulate(plan_scene("two balls", 8, 576, 1024), 24, 48, 8)
    b = simulate(plan_scene("two balls", 8, 576, 1024), 24, 48, 8)
    assert np.array_equal(a.positions, b.positions)
    remix = simulate(plan_scene("two green balls at night", 8, 576, 1024), 24, 48, 8)
    assert np.array_equal(a.positions, remix.positions)
    other = simulate(plan_scene("two balls", 9, 576, 1024), 24, 48, 9)
    assert not np.array_equal(a.positions, other.positions)


def test_landscape_frames_keep_objects_inside() -> None:
    plan = plan_scene("big balls", 2, 2160, 64)
    motion = simulate(plan, 10, 30, 2)
    assert (motion.positions[..., 1] <= plan.world.floor_fraction * plan.world_height).all()
    assert (motion.positions[..., 0] <= plan.world_width).all()
