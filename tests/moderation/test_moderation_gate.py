"""The gate as the pipeline calls it: fail closed in production, marked decisions in development."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from devkit.clip import build_devkit_checkpoint, synthesize_scene
from moderation.backbone import BackboneConfig, sha256_of_file
from moderation.config import ModerationContext, ModeratorConfig
from moderation.decision import moderate_video
from moderation.errors import ModelLoadError, ProductionModelRequired, UnreadableMedia
from moderation.moderator import load_moderator

VideoWriter = Callable[..., Path]


@pytest.fixture
def plain_video(tmp_path: Path, h264: VideoWriter) -> Path:
    frames = [synthesize_scene(0 if i < 10 else 1, 160, 96) for i in range(20)]
    return h264(tmp_path / "plain.mp4", frames, fps=8)


def test_production_without_weights_refuses_to_run(plain_video: Path, tmp_path: Path) -> None:
    with pytest.raises(ProductionModelRequired, match="no CLIP weights configured"):
        moderate_video(plain_video, ModerationContext())
    config = ModeratorConfig(backbone=BackboneConfig(cache_dir=tmp_path))
    with pytest.raises(ProductionModelRequired):
        moderate_video(plain_video, ModerationContext(config=config))


def test_production_refuses_the_development_checkpoint(plain_video: Path, model_cache: Path) -> None:
    weights = build_devkit_checkpoint(model_cache / "devkit")
    config = ModeratorConfig(
        backbone=BackboneConfig(model_name="provenance-devkit-tiny", weights=weights, cache_dir=model_cache)
    )
    with pytest.raises(ProductionModelRequired, match="development test model"):
        moderate_video(plain_video, ModerationContext(config=config))


def test_production_refuses_the_development_policy(plain_video: Path, model_cache: Path, tmp_path: Path) -> None:
    """Real (here: not devkit-marked) weights with the development policy would let everything through."""
    from safetensors.torch import load_file, save_file

    from moderation.policy import development_policy_path

    weights = tmp_path / "unmarked.safetensors"
    save_file(load_file(str(build_devkit_checkpoint(model_cache / "devkit"))), str(weights))
    config = ModeratorConfig(
        backbone=BackboneConfig(model_name="provenance-devkit-tiny", weights=weights, cache_dir=model_cache),
        policy=development_policy_path(),
    )
    with pytest.raises(ProductionModelRequired, match="tuned for the development test model"):
        moderate_video(plain_video, ModerationContext(config=config))


def test_development_policy_scores_the_same_categories_as_the_default() -> None:
    from moderation.policy import development_policy_path, load_policy

    default, development = load_policy(), load_policy(development_policy_path())
    assert [(c.id, c.prompts) for c in development.categories] == [(c.id, c.prompts) for c in default.categories]
    assert min(c.threshold for c in development.categories) > max(c.threshold for c in default.categories)


def test_production_with_a_missing_weights_file(plain_video: Path, tmp_path: Path) -> None:
    config = ModeratorConfig(backbone=BackboneConfig(weights=tmp_path / "clip.safetensors", cache_dir=tmp_path))
    with pytest.raises(ModelLoadError, match="weights file not found"):
        moderate_video(plain_video, ModerationContext(config=config))


def test_unknown_mode(plain_video: Path) -> None:
    config = ModeratorConfig(mode="staging")  # type: ignore[arg-type]
    with pytest.raises(ProductionModelRequired, match="unknown moderation mode"):
        moderate_video(plain_video, ModerationContext(config=config))


def test_development_decision_is_marked_and_carries_the_model_hashes(
    plain_video: Path, dev_config: ModeratorConfig
) -> None:
    decision = moderate_video(plain_video, ModerationContext(config=dev_config))
    payload = decision.to_payload().model_dump(mode="json")
    moderator = load_moderator(dev_config)
    assert moderator.backbone.config.weights is not None
    weights_hash = sha256_of_file(moderator.backbone.config.weights)
    assert payload["development_model"] is True
    assert payload["sampled_frames"] == 4  # 0, 1, 2 s and the cut at 1.25 s
    assert payload["duration_s"] == 2.5
    labels = [c["label"] for c in payload["classifiers"]]
    assert labels == [c.id for c in moderator.policy.categories]
    for entry in payload["classifiers"]:
        assert entry["development_model"] is True
        assert entry["model_hash"] == weights_hash
        assert entry["version"] == f"development@{moderator.policy.version}"
        assert entry["detail"]["policy_sha256"] == moderator.policy.sha256
        assert entry["outcome"] in {"allow", "review", "block"}
    assert payload["verdict"] in {"allow", "review", "block"}


def test_the_same_moderator_serves_every_video(dev_config: ModeratorConfig) -> None:
    assert load_moderator(dev_config) is load_moderator(replace(dev_config))


def test_unreadable_video_gives_no_decision(tmp_path: Path, dev_config: ModeratorConfig, h264: VideoWriter) -> None:
    video = h264(
        tmp_path / "v.mp4", [synthesize_scene(2, 96, 64)] * 16, fps=8, container_options={"movflags": "faststart"}
    )
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(video.read_bytes()[: video.stat().st_size // 2])
    with pytest.raises(UnreadableMedia, match="truncated"):
        moderate_video(cut, ModerationContext(config=dev_config))


def test_scoring_never_writes_to_the_video(plain_video: Path, dev_config: ModeratorConfig) -> None:
    before = plain_video.read_bytes()
    mtime = plain_video.stat().st_mtime_ns
    moderate_video(plain_video, ModerationContext(config=dev_config))
    assert plain_video.read_bytes() == before and plain_video.stat().st_mtime_ns == mtime


def test_policy_thresholds_decide_without_touching_the_models(
    plain_video: Path, dev_config: ModeratorConfig, tmp_path: Path
) -> None:
    """The same scores under a policy whose threshold sits below them flip the verdict to block."""
    policy = tmp_path / "strict.yaml"
    policy.write_text(
        "schema: provenance-moderation-policy/1\nname: strict\nversion: 1\n"
        "categories:\n  anything:\n    prompts: [a photo]\n    threshold: -1.0\n    review_band: 0.0\n"
    )
    decision = moderate_video(plain_video, ModerationContext(config=replace(dev_config, policy=policy)))
    assert decision.verdict == "block"
    (entry,) = decision.classifiers
    assert [(s.start_s, s.end_s) for s in entry.segments] == [(0.0, 2.5)]
