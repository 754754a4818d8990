"""Is an uploaded source real camera footage? A linear probe on CLIP image features.

Generated and camera images separate well along a linear direction of CLIP's feature space (the UnivFD
observation), so a logistic head trained with `moderation.training.train_head` on folders `real/` and
`generated/` gives the probability that a source is camera footage. The gate uses it on media uploaded
as a remix source, so footage of a real person cannot be laundered into the feed through a remix.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from moderation.errors import ModelLoadError
from moderation.scores import ScorerSpec, ScoreTrack, TrackBuilder

if TYPE_CHECKING:
    from moderation.backbone import Backbone
    from moderation.sampling import SamplingConfig

REAL_LABEL = "real"
PROBE_VERSION = "realness/1"


@dataclass(frozen=True)
class RealnessConfig:
    head: Path
    threshold: float = 0.8
    review_band: float = 0.1


class RealnessProbe:
    def __init__(self, backbone: Backbone, config: RealnessConfig) -> None:
        from moderation.heads import load_head

        head = load_head(config.head)
        head.check_backbone(backbone)
        if head.positive_label != REAL_LABEL:
            raise ModelLoadError(
                f"the real-footage probe must be trained with positive label {REAL_LABEL!r}, "
                f"not {head.positive_label!r}"
            )
        self.backbone = backbone
        self.config = config
        self.head = head

    def probabilities(self, images: list[np.ndarray]) -> np.ndarray:
        return np.asarray(self.head.probability(self.backbone.encode_images(images)))

    def track(self, path: Path, sampling: SamplingConfig | None = None) -> ScoreTrack:
        """P(real camera footage) per sampled frame of an image or video."""
        from moderation.backbone import sha256_of_file
        from moderation.sampling import FrameSample, SamplingConfig, VideoSampler, is_image_file, load_image

        path = Path(path)
        sampling = sampling or SamplingConfig()
        spec = ScorerSpec(
            name="realness_probe",
            label="real_camera_footage",
            version=PROBE_VERSION,
            model_hash=self.head.sha256,
            threshold=self.config.threshold,
            review_band=self.config.review_band,
            description=f"source {path.name} looks like real camera footage",
            development_model=self.backbone.development_model,
            detail={"source_sha256": sha256_of_file(path), "backbone_model_hash": self.backbone.model_hash},
        )
        builder = TrackBuilder(spec)
        if is_image_file(path):
            image = load_image(path, max_side_px=sampling.max_side_px)
            builder.add([0.0], self.probabilities([image]))
            return builder.build(0.0)
        sampler = VideoSampler(path, sampling)
        batch: list[FrameSample]
        for batch in sampler.batches():
            builder.add([s.timestamp_s for s in batch], self.probabilities([s.image for s in batch]))
        return builder.build(sampler.duration_s)

    def probability_real(self, path: Path, sampling: SamplingConfig | None = None) -> float:
        """The highest per-frame probability that the media is camera footage."""
        return self.track(path, sampling).peak
