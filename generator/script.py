"""The scene script: what a render put where and when, next to the pixels it produced.

Backends return it with the frames so that classifiers and tests can check the picture against the plan:
where each cameo is on every frame it appears in, and when each sound event (a bounce, a cameo entrance)
happens. Boxes are pixel boxes `(x0, y0, x1, y1)` with exclusive ends; times are seconds from the start.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Box = tuple[int, int, int, int]
SoundKind = Literal["bounce", "cameo_enter"]


@dataclass(frozen=True, slots=True)
class SoundEvent:
    kind: SoundKind
    time_s: float
    strength: float
    """0..1: how hard the impact was (bounces) or 1.0 (cameo cues); louder sounds for stronger events."""
    pan: float
    """-1 (left) .. 1 (right): where in the picture the event happens."""
    source: str
    """The object index (`object:3`) or the cameo id that caused the event."""
    surface: str = ""
    """For bounces: floor, ceiling, left or right."""
    tone_hz: float = 0.0
    """The fundamental of the sound drawn for the event (bigger objects sound lower)."""


@dataclass(frozen=True, slots=True)
class CameoAppearance:
    cameo_id: str
    first_frame: int
    last_frame: int
    """Inclusive: the cameo is drawn on frames first_frame..last_frame and on no other."""
    boxes: tuple[Box, ...]
    """One box per frame from first_frame to last_frame."""
    fps: int

    @property
    def start_s(self) -> float:
        return self.first_frame / self.fps

    @property
    def end_s(self) -> float:
        """The time the cameo leaves the picture (the start of the first frame without it)."""
        return (self.last_frame + 1) / self.fps

    def box_at(self, frame: int) -> Box | None:
        if self.first_frame <= frame <= self.last_frame:
            return self.boxes[frame - self.first_frame]
        return None


@dataclass(frozen=True, slots=True)
class SceneScript:
    width: int
    height: int
    fps: int
    frame_count: int
    cameos: tuple[CameoAppearance, ...] = ()
    events: tuple[SoundEvent, ...] = ()
    content_flags: tuple[str, ...] = field(default=())
    """Content the prompt put in the picture that moderation cares about (e.g. `splatter`)."""

    @property
    def bounce_times(self) -> tuple[float, ...]:
        return tuple(event.time_s for event in self.events if event.kind == "bounce")

    def cameo(self, cameo_id: str) -> CameoAppearance:
        for appearance in self.cameos:
            if appearance.cameo_id == cameo_id:
                return appearance
        raise KeyError(cameo_id)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form, for storing next to the video or handing to a classifier."""
        return {
            "width": self.width,
            "height": self.height,
            "fps": self.fps,
            "frame_count": self.frame_count,
            "content_flags": list(self.content_flags),
            "cameos": [
                {
                    "cameo_id": a.cameo_id,
                    "first_frame": a.first_frame,
                    "last_frame": a.last_frame,
                    "start_s": a.start_s,
                    "end_s": a.end_s,
                    "boxes": [list(box) for box in a.boxes],
                }
                for a in self.cameos
            ],
            "events": [
                {
                    "kind": e.kind,
                    "time_s": e.time_s,
                    "strength": e.strength,
                    "pan": e.pan,
                    "source": e.source,
                    "surface": e.surface,
                    "tone_hz": e.tone_hz,
                }
                for e in self.events
            ],
        }
