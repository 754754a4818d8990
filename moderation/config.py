"""How the gate is set up (`ModeratorConfig`) and what it is told about one video (`ModerationContext`).

Production is the default mode and it fails closed: with no weights configured the gate refuses to run
instead of passing videos unscored. Development mode swaps in the tiny devkit CLIP, and every decision it
takes says `development_model: true`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from moderation.backbone import BackboneConfig
from moderation.likeness import CameoReference, LikenessConfig
from moderation.sampling import SamplingConfig

Mode = Literal["production", "development"]


@dataclass(frozen=True)
class ModeratorConfig:
    """Everything a `Moderator` loads once and reuses for every video.

    `int8_calibration` is a folder of images or videos representative of the platform's content, used
    to measure int8 against fp32; without one a fixed synthetic set is used and the report names it.
    `realness_head` is the real-footage probe; without it, uploaded remix sources go to review.
    """

    mode: Mode = "production"
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    policy: Path | None = None
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    likeness: LikenessConfig = field(default_factory=LikenessConfig)
    protected_people: Path | None = None
    realness_head: Path | None = None
    realness_threshold: float = 0.8
    realness_review_band: float = 0.1
    int8_calibration: Path | None = None


@dataclass(frozen=True)
class ModerationContext:
    """Per-video facts from the write side.

    `cameos` maps every cameo id to check against to its reference; `grants` maps the cameo ids the
    creator holds a live grant for to the grant id; `source_media` are files uploaded as remix sources,
    which the real-footage probe checks.
    """

    config: ModeratorConfig = field(default_factory=ModeratorConfig)
    cameos: Mapping[str, CameoReference] = field(default_factory=dict)
    grants: Mapping[str, str] = field(default_factory=dict)
    source_media: Sequence[Path] = ()
    index: Any = None
    """A `LikenessIndex` of the other registered cameos, searched per face (its `grant_for` says which of
    them this video may show); with it, `cameos` need only hold the cameos the video was requested with."""
