"""What classifiers hand to the decision: raw scores over time, with the rule they are to be judged by.

Classifiers never decide. A `ScoreTrack` carries one scorer's score per sampled frame (NaN where it saw
nothing to score, such as a frame without a face) and the `ScorerSpec` that says which model produced it
and which threshold and review band the policy or config set for it; `moderation.decision` applies them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

Outcome = Literal["allow", "review", "block"]
OnMatch = Literal["block", "allow"]


@dataclass(frozen=True)
class ScorerSpec:
    """One scorer's identity and rule.

    `on_match` is what a score at or above the threshold means: "block" for policy categories, unknown
    likenesses and protected people; "allow" for a cameo the creator holds a live grant for, which is
    recorded (with the grant in `detail`) but allowed.
    """

    name: str
    label: str
    version: str
    model_hash: str
    threshold: float
    review_band: float
    description: str
    on_match: OnMatch = "block"
    development_model: bool = False
    detail: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ScoreTrack:
    spec: ScorerSpec
    timestamps: tuple[float, ...]
    scores: tuple[float, ...]
    duration_s: float

    @property
    def peak(self) -> float:
        """Highest observed score; 0.0 when nothing was observed."""
        observed = [s for s in self.scores if not math.isnan(s)]
        return max(observed) if observed else 0.0


class TrackBuilder:
    """Collects one scorer's scores batch by batch while a video streams through."""

    def __init__(self, spec: ScorerSpec) -> None:
        self.spec = spec
        self._timestamps: list[float] = []
        self._scores: list[float] = []

    def add(self, timestamps: Sequence[float], scores: np.ndarray | Sequence[float]) -> None:
        values = np.asarray(scores, dtype=np.float64).reshape(-1)
        if len(values) != len(timestamps):
            raise ValueError("one score per timestamp is required")
        self._timestamps.extend(float(t) for t in timestamps)
        self._scores.extend(float(v) for v in values)

    def build(self, duration_s: float) -> ScoreTrack:
        return ScoreTrack(self.spec, tuple(self._timestamps), tuple(self._scores), float(duration_s))
