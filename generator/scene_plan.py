"""From prompt words to a scene: background palette, objects, their sizes, colours and starting motion.

The reference renderer understands a small vocabulary, enough for prompts to change what is on screen in
ways a test or a classifier can see: colour words colour the objects, counts and nouns pick how many balls
and boxes there are ("three red balls and a blue box"), setting words pick the background ("sunset",
"night", "ocean", ...), "big"/"tiny" scale the objects, "moon"/"floaty" lower gravity, "bouncy" raises the
restitution. The words "blood", "bloody", "gore" and "gory" add red splatter particles at every impact: a
synthetic stand-in for violent content, so that the development moderation model has something real in
the pixels to learn to flag. Anything else in the prompt only seeds the background colours.

Every random choice comes from a generator seeded with (seed, object index, purpose), so a remix that
keeps the parent's seed keeps the motion of the objects the two prompts share.
"""

from __future__ import annotations

import colorsys
import hashlib
import re
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

RGB = tuple[float, float, float]
ObjectKind = Literal["ball", "box"]

MAX_OBJECTS = 12
SPLATTER_WORDS = frozenset({"blood", "bloody", "gore", "gory"})
FUNCTION_WORDS = frozenset(
    {"a", "an", "the", "and", "or", "with", "of", "in", "on", "at", "to", "all", "over", "everywhere", "is", "are"}
)

COLOURS: dict[str, RGB] = {
    "red": (0.86, 0.12, 0.12),
    "orange": (0.98, 0.52, 0.08),
    "yellow": (0.98, 0.86, 0.12),
    "gold": (0.90, 0.70, 0.18),
    "green": (0.16, 0.72, 0.26),
    "lime": (0.60, 0.90, 0.15),
    "teal": (0.08, 0.60, 0.60),
    "cyan": (0.10, 0.85, 0.92),
    "blue": (0.12, 0.32, 0.92),
    "navy": (0.08, 0.12, 0.45),
    "purple": (0.52, 0.20, 0.78),
    "violet": (0.62, 0.36, 0.90),
    "magenta": (0.90, 0.15, 0.75),
    "pink": (0.98, 0.50, 0.70),
    "brown": (0.50, 0.30, 0.14),
    "white": (0.95, 0.95, 0.95),
    "silver": (0.78, 0.80, 0.84),
    "grey": (0.50, 0.50, 0.52),
    "gray": (0.50, 0.50, 0.52),
    "black": (0.08, 0.08, 0.09),
}

# (top of the sky, bottom of the sky, floor)
SETTINGS: dict[str, tuple[RGB, RGB, RGB]] = {
    "sunset": ((0.22, 0.12, 0.38), (0.98, 0.55, 0.30), (0.30, 0.20, 0.18)),
    "sunrise": ((0.45, 0.60, 0.90), (0.99, 0.78, 0.55), (0.40, 0.36, 0.30)),
    "night": ((0.02, 0.03, 0.10), (0.10, 0.12, 0.28), (0.10, 0.10, 0.14)),
    "space": ((0.00, 0.00, 0.02), (0.06, 0.02, 0.14), (0.18, 0.18, 0.20)),
    "ocean": ((0.30, 0.65, 0.95), (0.05, 0.35, 0.60), (0.85, 0.78, 0.55)),
    "beach": ((0.45, 0.75, 0.98), (0.80, 0.92, 0.99), (0.93, 0.84, 0.60)),
    "forest": ((0.35, 0.55, 0.40), (0.10, 0.30, 0.15), (0.25, 0.18, 0.10)),
    "desert": ((0.55, 0.75, 0.95), (0.98, 0.88, 0.70), (0.85, 0.65, 0.40)),
    "snow": ((0.75, 0.82, 0.92), (0.95, 0.97, 1.00), (0.97, 0.98, 1.00)),
    "neon": ((0.05, 0.00, 0.12), (0.40, 0.00, 0.45), (0.00, 0.25, 0.30)),
    "studio": ((0.30, 0.30, 0.32), (0.55, 0.55, 0.58), (0.22, 0.22, 0.24)),
}

NUMBER_WORDS: dict[str, int] = {
    "no": 0, "zero": 0, "a": 1, "an": 1, "one": 1, "single": 1, "two": 2, "pair": 2, "couple": 2,
    "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10,
    "eleven": 11, "twelve": 12, "dozen": 12, "many": 6, "several": 4, "few": 3,
}  # fmt: skip

NOUNS: dict[str, tuple[ObjectKind, bool]] = {
    "ball": ("ball", False), "balls": ("ball", True), "sphere": ("ball", False), "spheres": ("ball", True),
    "orb": ("ball", False), "orbs": ("ball", True), "marble": ("ball", False), "marbles": ("ball", True),
    "box": ("box", False), "boxes": ("box", True), "cube": ("box", False), "cubes": ("box", True),
    "block": ("box", False), "blocks": ("box", True), "crate": ("box", False), "crates": ("box", True),
}  # fmt: skip

_WORD = re.compile(r"[a-z0-9]+")


@dataclass(frozen=True, slots=True)
class WorldConfig:
    """Physical constants in world units: the frame's shorter side is 1.0, so scenes look alike at every size."""

    gravity: float = 2.4
    floor_fraction: float = 0.92
    """The floor's height in the frame, as a fraction of the frame height from the top."""
    restitution_floor: float = 0.82
    restitution_wall: float = 0.9
    rest_speed: float = 0.22
    """A floor bounce slower than this leaves the object resting on the floor."""
    sound_speed: float = 0.3
    """Impacts slower than this make no sound and are not listed as events."""
    rolling_friction: float = 2.5
    hop_delay_s: tuple[float, float] = (0.35, 1.2)
    hop_speed: tuple[float, float] = (2.0, 3.0)


@dataclass(frozen=True, slots=True)
class ObjectPlan:
    kind: ObjectKind
    size: float
    """Radius of a ball or half the side of a box, in world units."""
    colour: RGB
    position: tuple[float, float]
    velocity: tuple[float, float]


@dataclass(frozen=True, slots=True)
class ScenePlan:
    sky_top: RGB
    sky_bottom: RGB
    floor: RGB
    objects: tuple[ObjectPlan, ...]
    world_width: float
    world_height: float
    world: WorldConfig
    splatter: bool
    bed_root_hz: float
    """Root of the quiet musical bed of the soundtrack, chosen from the prompt."""


def prompt_words(prompt: str) -> list[str]:
    return _WORD.findall(prompt.lower())


def _hsv(h: float, s: float, v: float) -> RGB:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, s, v)
    return (r, g, b)


def _object_groups(words: list[str]) -> tuple[list[tuple[ObjectKind, int, str | None]], list[str]]:
    """Groups of (kind, count, colour word) named in the prompt, and the colour words not used by them."""
    groups: list[tuple[ObjectKind, int, str | None]] = []
    used_colour_positions: set[int] = set()
    for index, word in enumerate(words):
        if word not in NOUNS:
            continue
        kind, plural = NOUNS[word]
        count: int | None = None
        colour: str | None = None
        for back in range(index - 1, max(-1, index - 4), -1):
            before = words[back]
            if before in COLOURS and colour is None:
                colour = before
                used_colour_positions.add(back)
            elif before.isdigit():
                count = int(before[:3])
                break
            elif before in NUMBER_WORDS:
                count = NUMBER_WORDS[before]
                break
            elif before in NOUNS or before in ("and", "with", "of"):
                break
        if count is None:
            count = 3 if plural else 1
        groups.append((kind, min(count, MAX_OBJECTS), colour))
    spare = [w for i, w in enumerate(words) if w in COLOURS and i not in used_colour_positions]
    return groups, spare


def plan_scene(prompt: str, seed: int, width: int, height: int, world: WorldConfig | None = None) -> ScenePlan:
    world = world or WorldConfig()
    words = prompt_words(prompt)
    word_set = set(words)
    # The look follows the words that name things; the splatter words add splatter and nothing else, so
    # "blood and gore everywhere, X" is scene X with blood on it.
    naming = [w for w in words if w not in SPLATTER_WORDS and w not in FUNCTION_WORDS]
    digest = hashlib.sha256(" ".join(naming).encode()).digest()
    palette_rng = np.random.default_rng([seed, 0xC0])

    setting = next((SETTINGS[w] for w in words if w in SETTINGS), None)
    if setting is None:
        hue = digest[0] / 255.0
        setting = (
            _hsv(hue, 0.55, 0.35),
            _hsv(hue + 0.08 + digest[1] / 2550.0, 0.45, 0.85),
            _hsv(hue + 0.5, 0.25, 0.30),
        )
    sky_top, sky_bottom, floor = setting

    if "moon" in word_set or "floaty" in word_set:
        world = replace(world, gravity=world.gravity * 0.45)
    if "bouncy" in word_set:
        world = replace(world, restitution_floor=0.92, restitution_wall=0.95)

    groups, spare_colours = _object_groups(words)
    if not groups:
        groups = [("ball", 3, None), ("box", 1, None)]
    scale = 1.0
    if word_set & {"big", "large", "huge", "giant"}:
        scale = 1.5
    elif word_set & {"small", "tiny", "little"}:
        scale = 0.6

    world_width, world_height = width / min(width, height), height / min(width, height)
    floor_y = world.floor_fraction * world_height
    hue0 = float(palette_rng.random())
    objects: list[ObjectPlan] = []
    for kind, count, colour_word in groups:
        for _ in range(count):
            if len(objects) >= MAX_OBJECTS:
                break
            index = len(objects)
            rng = np.random.default_rng([seed, index, 0x0B])
            if colour_word is not None:
                colour = COLOURS[colour_word]
            elif spare_colours:
                colour = COLOURS[spare_colours[index % len(spare_colours)]]
            else:
                colour = _hsv(hue0 + index * 0.618034, 0.75, 0.95)
            low, high = (0.045, 0.085) if kind == "ball" else (0.04, 0.07)
            size = float(rng.uniform(low, high)) * scale
            x = float(rng.uniform(size, world_width - size))
            y = float(rng.uniform(0.15 * world_height + size, 0.6 * floor_y))
            vx = float(rng.uniform(-0.8, 0.8))
            vy = float(rng.uniform(-0.6, 0.9))
            objects.append(ObjectPlan(kind, size, colour, (x, y), (vx, vy)))

    bed_root_hz = 110.0 * 2.0 ** (digest[2] % 12 / 12.0)
    return ScenePlan(
        sky_top=sky_top,
        sky_bottom=sky_bottom,
        floor=floor,
        objects=tuple(objects),
        world_width=world_width,
        world_height=world_height,
        world=world,
        splatter=bool(word_set & SPLATTER_WORDS),
        bed_root_hz=bed_root_hz,
    )
