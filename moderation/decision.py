"""Turning scores into a verdict: the only place thresholds are applied.

`judge` maps one score to allow / review / block, `segments_of` finds where along the video a scorer fired,
and `decide` folds every scorer into a `ModerationDecision` whose `to_payload()` is the body of the
ModerationDecided event. Scoring and this step are kept apart so a threshold change never touches a model
and a decision can be recomputed from recorded scores. `moderate_video` is the front door that samples,
scores and decides one file; it never writes to the video.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from moderation.scores import OnMatch, Outcome, ScorerSpec, ScoreTrack
from schemas.events import ModerationDecided

if TYPE_CHECKING:
    from moderation.config import ModerationContext

_SEVERITY: dict[str, int] = {"allow": 0, "review": 1, "block": 2}


def judge(score: float, threshold: float, review_band: float, on_match: OnMatch = "block") -> Outcome:
    """At or above the threshold: `on_match`; within `review_band` below it: review (unless a match is
    allowed anyway); below that, or not observed (NaN): allow."""
    if math.isnan(score):
        return "allow"
    if score >= threshold:
        return on_match
    if score >= threshold - review_band:
        return "review" if on_match == "block" else "allow"
    return "allow"


@dataclass(frozen=True)
class Segment:
    start_s: float
    end_s: float
    score: float


def segments_of(track: ScoreTrack) -> list[Segment]:
    """Runs of consecutive samples at or above the review level.

    A run lasts from its first sample until the next sample that did not fire (or the end of the
    media), since nothing is known about the frames in between; its score is the highest in the run.
    """
    spec = track.spec
    level = spec.threshold - spec.review_band if spec.on_match == "block" else spec.threshold
    segments: list[Segment] = []
    start: float | None = None
    peak = -math.inf
    for timestamp, score in zip(track.timestamps, track.scores, strict=True):
        fired = not math.isnan(score) and score >= level
        if fired:
            if start is None:
                start, peak = timestamp, score
            else:
                peak = max(peak, score)
        elif start is not None:
            segments.append(Segment(start, timestamp, peak))
            start = None
    if start is not None:
        end = max(track.duration_s, track.timestamps[-1]) if track.timestamps else track.duration_s
        segments.append(Segment(start, end, peak))
    return segments


@dataclass(frozen=True)
class ClassifierResult:
    spec: ScorerSpec
    score: float
    outcome: Outcome
    segments: tuple[Segment, ...]

    def to_payload(self) -> dict[str, Any]:
        spec = self.spec
        return {
            "name": spec.name,
            "version": spec.version,
            "model_hash": spec.model_hash,
            "label": spec.label,
            "score": _round(self.score),
            "threshold": _round(spec.threshold),
            "outcome": self.outcome,
            "segments": [
                {"start_s": _round(s.start_s), "end_s": _round(s.end_s), "score": _round(s.score)}
                for s in self.segments
            ],
            "development_model": spec.development_model,
            "detail": _plain(spec.detail),
        }


@dataclass(frozen=True)
class Condition:
    """A finding that is not a score, such as a check that could not be run (which never allows)."""

    outcome: Outcome
    reason: str


@dataclass(frozen=True)
class ModerationDecision:
    verdict: Outcome
    development_model: bool
    sampled_frames: int
    duration_s: float
    classifiers: tuple[ClassifierResult, ...]
    reasons: tuple[str, ...]

    def to_payload(self) -> ModerationDecided:
        """The ModerationDecided event payload."""
        return ModerationDecided.model_validate(
            {
                "verdict": self.verdict,
                "development_model": self.development_model,
                "sampled_frames": self.sampled_frames,
                "duration_s": _round(self.duration_s),
                "classifiers": [c.to_payload() for c in self.classifiers],
                "reasons": list(self.reasons),
            }
        )


def decide(
    tracks: Sequence[ScoreTrack],
    *,
    sampled_frames: int,
    duration_s: float,
    development_model: bool,
    conditions: Sequence[Condition] = (),
) -> ModerationDecision:
    """The verdict is the most severe outcome of any scorer or condition; every non-allow says why."""
    results: list[ClassifierResult] = []
    reasons: list[str] = []
    worst: Outcome = "allow"
    for track in tracks:
        spec = track.spec
        score = track.peak
        outcome = judge(score, spec.threshold, spec.review_band, spec.on_match)
        segments = tuple(segments_of(track))
        results.append(ClassifierResult(spec, score, outcome, segments))
        if outcome != "allow":
            where = ", ".join(f"{s.start_s:.1f}-{s.end_s:.1f}s" for s in segments)
            reasons.append(
                f"{outcome}: {spec.description} (score {score:.3f}, threshold {spec.threshold:.3f}"
                + (f", at {where})" if where else ")")
            )
        if _SEVERITY[outcome] > _SEVERITY[worst]:
            worst = outcome
    for condition in conditions:
        reasons.append(f"{condition.outcome}: {condition.reason}")
        if _SEVERITY[condition.outcome] > _SEVERITY[worst]:
            worst = condition.outcome
    return ModerationDecision(
        verdict=worst,
        development_model=development_model or any(r.spec.development_model for r in results),
        sampled_frames=sampled_frames,
        duration_s=duration_s,
        classifiers=tuple(results),
        reasons=tuple(reasons),
    )


def moderate_video(path: Path, context: ModerationContext) -> ModerationDecision:
    """Samples, scores and judges one video file under `context.config` (models loaded once per config).

    Raises `ProductionModelRequired` when production mode has no real weights, `UnreadableMedia` or
    `InvalidInput` for media it cannot moderate completely, `ModelLoadError` for unusable models; in each
    case no decision exists and the video must stay at its gate.
    """
    from moderation.moderator import load_moderator

    return load_moderator(context.config).moderate_video(Path(path), context)


def _round(value: float) -> float:
    return round(float(value), 6)


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, float):
        return _round(value)
    return value
