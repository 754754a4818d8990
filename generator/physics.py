"""Per-frame rigid-body motion of the scene's objects, with bounce times solved exactly.

Objects fall under gravity and bounce off the floor, the walls and the ceiling. Within each frame step the
next collision is found analytically (a quadratic for the floor and ceiling, a line for the walls), so the
impact times listed in the scene script are exact and the soundtrack can put each bounce on its sample,
not on the frame grid. An object whose bounce has become too slow comes to rest and rolls to a stop, then
hops again after a short delay so that long clips stay lively. Objects do not collide with each other.

Everything here is float64 numpy on the CPU, so the motion is the same on every device; only the drawing
runs on the accelerator.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from generator.scene_plan import ObjectPlan, ScenePlan

MAX_PARTICLES = 1500
_MAX_HITS_PER_STEP = 32


@dataclass(frozen=True, slots=True)
class Impact:
    time_s: float
    object_index: int
    surface: str
    speed: float
    point: tuple[float, float]
    """Where the object touched the surface, in world units."""


@dataclass(frozen=True, slots=True)
class Particles:
    """Splatter drops: each flies on a parabola from `spawn_s` and sticks where it lands (a stain)."""

    spawn_s: np.ndarray
    origin: np.ndarray
    velocity: np.ndarray
    land_s: np.ndarray
    land_point: np.ndarray
    size: np.ndarray

    def __len__(self) -> int:
        return int(self.spawn_s.shape[0])


@dataclass(frozen=True, slots=True)
class Motion:
    positions: np.ndarray
    """(frames, objects, 2) centres in world units at each frame's time."""
    impacts: tuple[Impact, ...]
    particles: Particles | None


def _next_hit(
    x: float, y: float, vx: float, vy: float, g: float, bounds: tuple[float, float, float, float]
) -> tuple[float, str]:
    left, right, top, bottom = bounds
    best, surface = math.inf, ""
    if vx < 0:
        best, surface = max(0.0, (left - x) / vx), "left"
    elif vx > 0:
        best, surface = max(0.0, (right - x) / vx), "right"
    c = min(y - bottom, 0.0)
    tau = (-vy + math.sqrt(vy * vy - 2.0 * g * c)) / g
    if tau < best:
        best, surface = tau, "floor"
    if vy < 0:
        c_top = max(y - top, 0.0)
        disc = vy * vy - 2.0 * g * c_top
        if disc >= 0:
            tau = (-vy - math.sqrt(disc)) / g
            if tau < best:
                best, surface = tau, "ceiling"
    return best, surface


def _simulate_object(
    obj: ObjectPlan, index: int, plan: ScenePlan, fps: int, frame_count: int, seed: int
) -> tuple[np.ndarray, list[Impact]]:
    world = plan.world
    g = world.gravity
    floor_y = world.floor_fraction * plan.world_height
    size = obj.size
    bounds = (size, plan.world_width - size, size, floor_y - size)
    left, right, top, bottom = bounds
    x, y = obj.position
    vx, vy = obj.velocity
    hop_rng = np.random.default_rng([seed, index, 0xB0])
    resting = False
    hop_at = math.inf
    positions = np.empty((frame_count, 2), dtype=np.float64)
    impacts: list[Impact] = []

    for frame in range(frame_count):
        positions[frame] = (x, y)
        t = frame / fps
        t_end = (frame + 1) / fps
        for _ in range(_MAX_HITS_PER_STEP):
            remaining = t_end - t
            if remaining <= 1e-12:
                break
            if resting:
                span = min(remaining, max(0.0, hop_at - t))
                decay = math.exp(-world.rolling_friction * span)
                x += vx * (1.0 - decay) / world.rolling_friction
                vx *= decay
                if x < left:
                    x, vx = 2 * left - x, -vx
                elif x > right:
                    x, vx = 2 * right - x, -vx
                x = min(max(x, left), right)
                t += span
                if t >= hop_at - 1e-12:
                    resting = False
                    hop_at = math.inf
                    vy = -float(hop_rng.uniform(*world.hop_speed))
                    vx = float(hop_rng.uniform(-0.8, 0.8))
                continue
            tau, surface = _next_hit(x, y, vx, vy, g, bounds)
            step = min(tau, remaining)
            x += vx * step
            y += vy * step + 0.5 * g * step * step
            vy += g * step
            t += step
            if tau > remaining:
                break
            if surface == "floor":
                speed, y = vy, bottom
                vy = -world.restitution_floor * vy
                point = (x, floor_y)
                if -vy < world.rest_speed:
                    resting, vy = True, 0.0
                    hop_at = t + float(hop_rng.uniform(*world.hop_delay_s))
            elif surface == "ceiling":
                speed, y = -vy, top
                vy = -world.restitution_wall * vy
                point = (x, 0.0)
            else:
                speed = abs(vx)
                x = left if surface == "left" else right
                vx = -world.restitution_wall * vx
                point = (0.0 if surface == "left" else plan.world_width, y)
            if speed >= world.sound_speed:
                impacts.append(Impact(t, index, surface, speed, point))
    return positions, impacts


_NORMALS = {"floor": (0.0, -1.0), "ceiling": (0.0, 1.0), "left": (1.0, 0.0), "right": (-1.0, 0.0)}


def _splatter(impacts: list[Impact], plan: ScenePlan, seed: int) -> Particles:
    g = plan.world.gravity
    floor_y = plan.world.floor_fraction * plan.world_height
    spawn: list[np.ndarray] = []
    origin: list[np.ndarray] = []
    velocity: list[np.ndarray] = []
    size: list[np.ndarray] = []
    total = 0
    for number, impact in enumerate(impacts):
        strength = min(1.0, impact.speed / 3.0)
        count = min(int(8 + 24 * strength), MAX_PARTICLES - total)
        if count <= 0:
            break
        total += count
        rng = np.random.default_rng([seed, 0x5A, number])
        normal = np.array(_NORMALS[impact.surface])
        tangent = np.array([-normal[1], normal[0]])
        base = (0.6 + 0.8 * strength) * rng.uniform(0.6, 1.4, count)
        v = (normal[None, :] * rng.uniform(0.3, 1.0, count)[:, None]) + (
            tangent[None, :] * rng.uniform(-0.9, 0.9, count)[:, None]
        )
        velocity.append(v * base[:, None])
        origin.append(np.broadcast_to(np.array(impact.point) + normal * 0.005, (count, 2)))
        spawn.append(np.full(count, impact.time_s))
        size.append(rng.uniform(0.025, 0.05, count))
    if not spawn:
        empty = np.zeros((0,))
        return Particles(empty, np.zeros((0, 2)), np.zeros((0, 2)), empty, np.zeros((0, 2)), empty)
    spawn_s = np.concatenate(spawn)
    p0 = np.concatenate(origin)
    v0 = np.concatenate(velocity)
    x0, y0, vx, vy = p0[:, 0], p0[:, 1], v0[:, 0], v0[:, 1]
    tau = (-vy + np.sqrt(vy * vy + 2.0 * g * np.maximum(floor_y - y0, 0.0))) / g
    with np.errstate(divide="ignore", invalid="ignore"):
        tau_wall = np.where(vx < 0, -x0 / vx, np.where(vx > 0, (plan.world_width - x0) / vx, np.inf))
    tau = np.minimum(tau, np.maximum(tau_wall, 0.0))
    land = np.stack([x0 + vx * tau, y0 + vy * tau + 0.5 * g * tau * tau], axis=1)
    land[:, 0] = np.clip(land[:, 0], 0.0, plan.world_width)
    land[:, 1] = np.clip(land[:, 1], 0.0, floor_y)
    return Particles(spawn_s, p0, v0, spawn_s + tau, land, np.concatenate(size))


def simulate(plan: ScenePlan, fps: int, frame_count: int, seed: int) -> Motion:
    tracks: list[np.ndarray] = []
    impacts: list[Impact] = []
    for index, obj in enumerate(plan.objects):
        positions, hits = _simulate_object(obj, index, plan, fps, frame_count, seed)
        tracks.append(positions)
        impacts.extend(hits)
    impacts.sort(key=lambda hit: (hit.time_s, hit.object_index))
    positions = np.stack(tracks, axis=1) if tracks else np.zeros((frame_count, 0, 2))
    particles = _splatter(impacts, plan, seed) if plan.splatter else None
    return Motion(positions=positions, impacts=tuple(impacts), particles=particles)
