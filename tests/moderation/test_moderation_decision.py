"""The decision function alone: thresholds, review bands, segments, verdicts and the payload shape."""

from __future__ import annotations

import math

import pytest

from moderation.decision import Condition, decide, judge, segments_of
from moderation.scores import OnMatch, ScorerSpec, ScoreTrack


def spec(
    threshold: float = 0.3, band: float = 0.05, on_match: OnMatch = "block", label: str = "violence_gore"
) -> ScorerSpec:
    return ScorerSpec(
        name="policy.prompts",
        label=label,
        version="test@1",
        model_hash="ab" * 32,
        threshold=threshold,
        review_band=band,
        description=f"{label} test scorer",
        on_match=on_match,
        detail={"policy_sha256": "cd" * 32},
    )


def track(scores: list[float], s: ScorerSpec | None = None, duration: float | None = None) -> ScoreTrack:
    times = tuple(float(i) for i in range(len(scores)))
    return ScoreTrack(s or spec(), times, tuple(scores), float(len(scores)) if duration is None else duration)


@pytest.mark.parametrize(
    ("score", "expected"),
    [
        (0.30, "block"),  # exactly at the threshold blocks
        (0.31, "block"),
        (0.2999, "review"),
        (0.25, "review"),  # exactly at the bottom of the review band
        (0.2499, "allow"),
        (-1.0, "allow"),
        (math.nan, "allow"),  # nothing observed
    ],
)
def test_judge_block_review_allow_at_the_thresholds(score: float, expected: str) -> None:
    assert judge(score, 0.30, 0.05) == expected


def test_a_match_that_is_allowed_never_goes_to_review() -> None:
    assert judge(0.95, 0.9, 0.05, "allow") == "allow"
    assert judge(0.88, 0.9, 0.05, "allow") == "allow"


def test_zero_review_band_goes_straight_from_allow_to_block() -> None:
    assert judge(0.2999, 0.3, 0.0) == "allow"
    assert judge(0.3, 0.3, 0.0) == "block"


def test_segments_cover_runs_of_firing_samples_until_the_next_quiet_sample() -> None:
    segments = segments_of(track([0.1, 0.26, 0.4, 0.1, 0.1, 0.35, 0.36]))
    assert [(s.start_s, s.end_s, s.score) for s in segments] == [(1.0, 3.0, 0.4), (5.0, 7.0, 0.36)]


def test_unobserved_samples_break_a_segment() -> None:
    segments = segments_of(track([0.4, math.nan, 0.4]))
    assert [(s.start_s, s.end_s) for s in segments] == [(0.0, 1.0), (2.0, 3.0)]


def test_verdict_is_the_most_severe_outcome_and_every_non_allow_gives_a_reason() -> None:
    quiet = track([0.1, 0.1], spec(label="self_harm"))
    borderline = track([0.1, 0.27], spec(label="hate_symbols"))
    decision = decide([quiet, borderline], sampled_frames=2, duration_s=2.0, development_model=False)
    assert decision.verdict == "review"
    assert [c.outcome for c in decision.classifiers] == ["allow", "review"]
    assert len(decision.reasons) == 1 and "hate_symbols" in decision.reasons[0]

    blocking = track([0.5, 0.1], spec(label="violence_gore"))
    decision = decide([quiet, borderline, blocking], sampled_frames=2, duration_s=2.0, development_model=False)
    assert decision.verdict == "block"
    assert len(decision.reasons) == 2


def test_a_condition_that_could_not_be_checked_prevents_allow() -> None:
    decision = decide(
        [track([0.0])],
        sampled_frames=1,
        duration_s=1.0,
        development_model=False,
        conditions=[Condition("review", "probe missing")],
    )
    assert decision.verdict == "review"
    assert decision.reasons == ("review: probe missing",)


def test_granted_cameo_match_is_recorded_with_its_grant_and_allowed() -> None:
    granted = ScorerSpec(
        name="likeness",
        label="cameo:c1",
        version="likeness/1",
        model_hash="ef" * 32,
        threshold=0.88,
        review_band=0.04,
        description="cameo c1 appears under grant g9",
        on_match="allow",
        detail={"cameo_id": "c1", "grant_id": "g9"},
    )
    decision = decide([track([0.95, 0.2], granted)], sampled_frames=2, duration_s=2.0, development_model=False)
    entry = decision.to_payload().model_dump(mode="json")["classifiers"][0]
    assert decision.verdict == "allow"
    assert entry["outcome"] == "allow"
    assert entry["detail"] == {"cameo_id": "c1", "grant_id": "g9"}
    assert entry["segments"] == [{"start_s": 0.0, "end_s": 1.0, "score": 0.95}]


def test_payload_has_exactly_the_moderation_decided_shape() -> None:
    decision = decide([track([0.1, 0.45, 0.2], duration=2.5)], sampled_frames=3, duration_s=2.5, development_model=True)
    payload = decision.to_payload().model_dump(mode="json")
    assert set(payload) == {"verdict", "development_model", "sampled_frames", "duration_s", "classifiers", "reasons"}
    assert payload["verdict"] == "block"
    assert payload["development_model"] is True
    assert payload["sampled_frames"] == 3
    assert payload["duration_s"] == 2.5
    (entry,) = payload["classifiers"]
    assert set(entry) == {
        "name",
        "version",
        "model_hash",
        "label",
        "score",
        "threshold",
        "outcome",
        "segments",
        "development_model",
        "detail",
    }
    assert entry["model_hash"] == "ab" * 32
    assert entry["score"] == 0.45 and entry["threshold"] == 0.3 and entry["outcome"] == "block"
    assert entry["segments"] == [{"start_s": 1.0, "end_s": 2.0, "score": 0.45}]
    assert all(isinstance(r, str) for r in payload["reasons"])


def test_development_flag_of_any_scorer_marks_the_decision() -> None:
    dev_spec = ScorerSpec(
        name="likeness",
        label="protected_people",
        version="likeness/1",
        model_hash="00" * 32,
        threshold=0.9,
        review_band=0.0,
        description="closest protected person",
        development_model=True,
    )
    decision = decide([track([0.1], dev_spec)], sampled_frames=1, duration_s=1.0, development_model=False)
    assert decision.development_model is True
    assert decision.to_payload().model_dump(mode="json")["classifiers"][0]["development_model"] is True
