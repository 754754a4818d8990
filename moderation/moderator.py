"""The composition root of the gate: loads the models once, then samples, scores and decides videos.

A worker keeps one `Moderator` for its lifetime (`load_moderator` caches one per config), so the backbone,
the exported encoder, the prompt embeddings and the heads are loaded once. Each video streams through in
sample batches: every batch is encoded once and read by the policy scorer and the likeness observer.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import replace
from pathlib import Path

import numpy as np

from moderation.backbone import DEVKIT_MODEL_NAME, Backbone, BackboneConfig, is_devkit_checkpoint, load_backbone
from moderation.config import ModerationContext, ModeratorConfig
from moderation.decision import Condition, ModerationDecision, decide, judge
from moderation.errors import ProductionModelRequired
from moderation.int8_gate import Int8Report
from moderation.likeness import LikenessScorer, ProtectedPeople
from moderation.policy import PolicyScorer, default_policy_path, development_policy_path, load_policy
from moderation.realness import RealnessConfig, RealnessProbe
from moderation.sampling import SamplingConfig, VideoSampler
from moderation.scores import ScoreTrack, TrackBuilder

_OUTCOME_CODES = {"allow": 0, "review": 1, "block": 2}


def backbone_config_for(config: ModeratorConfig) -> BackboneConfig:
    """The backbone to load for a mode; production without real weights is refused here."""
    if config.mode == "development":
        from devkit.clip import development_backbone_config

        return development_backbone_config(config.backbone)
    if config.mode != "production":
        raise ProductionModelRequired(f"unknown moderation mode {config.mode!r} (production or development)")
    weights = config.backbone.weights
    if weights is None:
        raise ProductionModelRequired(
            "moderation has no CLIP weights configured: set the weights file, or use development mode "
            "(decisions then say development_model)"
        )
    if Path(weights).is_file() and is_devkit_checkpoint(Path(weights)):
        raise ProductionModelRequired(
            "the configured weights are the development test model; production needs real CLIP weights"
        )
    return config.backbone


def policy_path_for(config: ModeratorConfig) -> Path:
    if config.policy is not None:
        return Path(config.policy)
    return development_policy_path() if config.mode == "development" else default_policy_path()


class Moderator:
    """Every model of the gate, loaded once and reused for each video a worker moderates."""

    def __init__(self, config: ModeratorConfig) -> None:
        self.config = config
        backbone_config = backbone_config_for(config)
        self.policy = load_policy(policy_path_for(config))
        if config.mode == "production" and self.policy.calibrated_for == DEVKIT_MODEL_NAME:
            raise ProductionModelRequired(
                f"policy {self.policy.name} is tuned for the development test model; production needs a real policy"
            )
        self.backbone: Backbone = load_backbone(backbone_config)
        self.policy_scorer = PolicyScorer(self.policy, self.backbone)
        self.likeness = LikenessScorer(self.backbone, config.likeness)
        self.protected = (
            ProtectedPeople.load(config.protected_people, self.backbone) if config.protected_people else None
        )
        self.realness = (
            RealnessProbe(
                self.backbone,
                RealnessConfig(config.realness_head, config.realness_threshold, config.realness_review_band),
            )
            if config.realness_head
            else None
        )
        self.int8_report: Int8Report | None = None
        if self.backbone.config.quantize_int8:
            self.int8_report = self._enable_int8()

    def policy_outcomes(self, embeddings: np.ndarray) -> np.ndarray:
        """Outcome codes (0 allow, 1 review, 2 block) per embedding and policy scorer: what int8 must keep."""
        columns = [
            [_OUTCOME_CODES[judge(float(v), spec.threshold, spec.review_band, spec.on_match)] for v in scores]
            for spec, scores in self.policy_scorer.score(embeddings)
        ]
        return np.asarray(columns, dtype=np.int8).T

    def _enable_int8(self) -> Int8Report:
        if self.config.int8_calibration is not None:
            images, calibration_id = _folder_images(self.config.int8_calibration, self.config.sampling)
        else:
            from devkit.clip import calibration_images

            images, calibration_id = calibration_images(), "devkit-synthetic-32"
        decision_id = f"{self.policy.sha256}:{self.backbone.model_hash}"
        return self.backbone.enable_int8(
            images, self.policy_outcomes, calibration_id=calibration_id, decision_id=decision_id
        )

    def moderate_video(self, path: Path, context: ModerationContext) -> ModerationDecision:
        identities = self.likeness.identities(context.cameos, context.grants, self.protected)
        observer = self.likeness.observe_video(identities, context.index)
        builders: list[TrackBuilder] = []
        sampler = VideoSampler(Path(path), self.config.sampling)
        for batch in sampler.batches():
            embeddings = self.backbone.encode_images([s.image for s in batch])
            timestamps = [s.timestamp_s for s in batch]
            scored = self.policy_scorer.score(embeddings)
            if not builders:
                builders = [TrackBuilder(spec) for spec, _ in scored]
            for builder, (_, scores) in zip(builders, scored, strict=True):
                builder.add(timestamps, scores)
            observer.observe(batch)
        tracks: list[ScoreTrack] = [b.build(sampler.duration_s) for b in builders]
        tracks.extend(observer.tracks(sampler.duration_s))
        conditions: list[Condition] = []
        for source in context.source_media:
            if self.realness is None:
                conditions.append(
                    Condition(
                        "review", f"no real-footage probe is configured to check uploaded source {Path(source).name}"
                    )
                )
            else:
                tracks.append(self.realness.track(Path(source), self.config.sampling))
        runtime = self.backbone.runtime_name
        tracks = [replace(t, spec=replace(t.spec, detail={**t.spec.detail, "runtime": runtime})) for t in tracks]
        return decide(
            tracks,
            sampled_frames=sampler.samples_taken,
            duration_s=sampler.duration_s,
            development_model=self.backbone.development_model,
            conditions=conditions,
        )


@functools.lru_cache(maxsize=4)
def load_moderator(config: ModeratorConfig) -> Moderator:
    """One `Moderator` per distinct config per process."""
    return Moderator(config)


def _folder_images(folder: Path, sampling: SamplingConfig) -> tuple[list[np.ndarray], str]:
    """Every image and sampled video frame under a folder, and an id that changes when its files do."""
    from moderation.backbone import sha256_of_file
    from moderation.sampling import iter_media_batches
    from moderation.training import MEDIA_SUFFIXES

    files = sorted(p for p in Path(folder).rglob("*") if p.is_file() and p.suffix.lower() in MEDIA_SUFFIXES)
    digest = hashlib.sha256()
    images: list[np.ndarray] = []
    for file in files:
        digest.update(f"{file.relative_to(folder)}:{sha256_of_file(file)}\n".encode())
        for batch in iter_media_batches(file, replace(sampling, max_samples=64)):
            images.extend(s.image for s in batch)
    return images, f"folder:{digest.hexdigest()[:16]}"
