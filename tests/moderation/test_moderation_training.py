"""Training linear heads on labelled folders, evaluating them, and using them in the gate."""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from devkit.clip import synthesize_scene
from kernel.errors import InvalidInput
from moderation.backbone import Backbone
from moderation.config import ModerationContext, ModeratorConfig
from moderation.decision import moderate_video
from moderation.errors import ModelLoadError
from moderation.heads import head_paths, load_head, save_head
from moderation.realness import RealnessConfig, RealnessProbe
from moderation.training import evaluate, fit_logistic, threshold_for_precision, train_head

VideoWriter = Callable[..., Path]
Splatter = Callable[[np.ndarray, int], np.ndarray]


def save_png(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)


def splatter_folder(root: Path, seeds: range, splatter: Splatter) -> Path:
    for seed in seeds:
        clean = synthesize_scene(seed, 128, 96)
        save_png(root / "clean" / f"{seed}.png", clean)
        save_png(root / "splatter" / f"{seed}.png", splatter(clean, seed))
    return root


@pytest.fixture
def splatter_head(tmp_path: Path, dev_backbone: Backbone, splatter: Splatter, h264: VideoWriter) -> Path:
    train = splatter_folder(tmp_path / "train", range(0, 24), splatter)
    # Videos count too: every sampled frame is a training example.
    h264(train / "splatter" / "clip.mp4", [splatter(synthesize_scene(900, 128, 96), 900)] * 16, fps=8)
    h264(train / "clean" / "clip.mp4", [synthesize_scene(901, 128, 96)] * 16, fps=8)
    report = train_head(train, tmp_path / "heads" / "gore", dev_backbone, positive_label="splatter")
    assert report.samples == 48 + 3 + 3 and report.positives == 27  # each clip: 0 s, 1 s and its last frame
    assert report.train_accuracy > 0.95
    return report.head_path


def test_head_separates_held_out_frames(
    splatter_head: Path, tmp_path: Path, dev_backbone: Backbone, splatter: Splatter
) -> None:
    held_out = splatter_folder(tmp_path / "held-out", range(500, 520), splatter)
    stream = io.StringIO()
    report = evaluate(held_out, dev_backbone, head=splatter_head, target_precision=0.9, stream=stream)
    assert report.true_positives + report.false_negatives == 20
    assert report.false_positives + report.true_negatives == 20
    assert report.precision >= 0.85 and report.recall >= 0.85
    assert report.threshold_for_target is not None
    text = stream.getvalue()
    assert "confusion matrix" in text and "precision" in text and "threshold for precision >= 0.900" in text


def test_head_files_carry_the_backbone_hash(splatter_head: Path, dev_backbone: Backbone) -> None:
    weights, metadata_path = head_paths(splatter_head)
    assert weights.suffix == ".safetensors" and weights.is_file()
    metadata = json.loads(metadata_path.read_text())
    assert metadata["backbone_model_hash"] == dev_backbone.model_hash
    assert metadata["positive_label"] == "splatter" and metadata["labels"] == ["clean", "splatter"]
    assert metadata["development_model"] is True
    head = load_head(splatter_head)
    head.check_backbone(dev_backbone)
    assert len(head.sha256) == 64


def test_head_for_another_backbone_is_refused(splatter_head: Path, dev_backbone: Backbone, tmp_path: Path) -> None:
    head = load_head(splatter_head)
    foreign = replace(head, backbone_model_hash="1" * 64)
    save_head(foreign, tmp_path / "foreign", {})
    with pytest.raises(ModelLoadError, match="trained on backbone 111111111111"):
        load_head(tmp_path / "foreign").check_backbone(dev_backbone)


def test_head_weights_and_metadata_must_match(splatter_head: Path, tmp_path: Path) -> None:
    weights, metadata = head_paths(splatter_head)
    (tmp_path / "h.safetensors").write_bytes(weights.read_bytes())
    record = json.loads(metadata.read_text())
    record["weights_sha256"] = "0" * 64
    (tmp_path / "h.json").write_text(json.dumps(record))
    with pytest.raises(ModelLoadError, match="does not describe"):
        load_head(tmp_path / "h.safetensors")
    (tmp_path / "h.safetensors").write_bytes(b"garbage")
    with pytest.raises(ModelLoadError, match="corrupt"):
        load_head(tmp_path / "h.safetensors")


def test_policy_category_with_a_trained_head_blocks_in_the_gate(
    splatter_head: Path,
    tmp_path: Path,
    dev_config: ModeratorConfig,
    dev_backbone: Backbone,
    splatter: Splatter,
    h264: VideoWriter,
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "schema: provenance-moderation-policy/1\nname: heads\nversion: 3\n"
        "categories:\n  gore:\n    label: Gore\n"
        f"    head: {{file: {splatter_head}, threshold: 0.5, review_band: 0.1}}\n"
    )
    config = replace(dev_config, policy=policy)
    clean = [synthesize_scene(700, 128, 96)] * 16
    gory = clean[:8] + [splatter(clean[0], 700)] * 8
    clean_payload = (
        moderate_video(h264(tmp_path / "clean.mp4", clean), ModerationContext(config=config))
        .to_payload()
        .model_dump(mode="json")
    )
    gory_payload = (
        moderate_video(h264(tmp_path / "gory.mp4", gory), ModerationContext(config=config))
        .to_payload()
        .model_dump(mode="json")
    )

    assert clean_payload["verdict"] == "allow"
    assert gory_payload["verdict"] == "block"
    (entry,) = gory_payload["classifiers"]
    assert entry["name"] == "policy.head" and entry["label"] == "gore"
    assert entry["model_hash"] == load_head(splatter_head).sha256
    assert entry["detail"]["backbone_model_hash"] == dev_backbone.model_hash
    assert entry["segments"] == [{"start_s": 1.0, "end_s": 2.0, "score": entry["score"]}]


def camera_like(seed: int, width: int = 128, height: int = 96) -> np.ndarray:
    """Coarse sensor grain and lens vignetting over a scene: what sets camera frames apart here."""
    import cv2

    rng = np.random.default_rng(seed)
    image = synthesize_scene(seed, width, height).astype(np.float32)
    grain = rng.normal(0, 30, (height // 4, width // 4, 3)).astype(np.float32)
    image += cv2.resize(grain, (width, height), interpolation=cv2.INTER_LINEAR)
    yy, xx = np.mgrid[0:height, 0:width]
    radius = np.sqrt(((xx - width / 2) / (width / 2)) ** 2 + ((yy - height / 2) / (height / 2)) ** 2)
    image *= (1 - 0.8 * np.clip(radius, 0, 1.2) ** 2 / 1.44)[..., None]
    return np.clip(image, 0, 255).astype(np.uint8)


def realness_folder(root: Path, seeds: range) -> Path:
    for seed in seeds:
        save_png(root / "real" / f"{seed}.png", camera_like(seed))
        save_png(root / "generated" / f"{seed}.png", synthesize_scene(seed + 5000, 128, 96))
    return root


def test_realness_probe_tells_camera_frames_from_renders(tmp_path: Path, dev_backbone: Backbone) -> None:
    report = train_head(
        realness_folder(tmp_path / "train", range(30)), tmp_path / "probe", dev_backbone, positive_label="real"
    )
    probe = RealnessProbe(dev_backbone, RealnessConfig(report.head_path))
    held_out = realness_folder(tmp_path / "held-out", range(300, 320))
    real = [probe.probability_real(p) for p in sorted((held_out / "real").iterdir())]
    generated = [probe.probability_real(p) for p in sorted((held_out / "generated").iterdir())]
    accuracy = (sum(p > 0.5 for p in real) + sum(p <= 0.5 for p in generated)) / 40
    assert accuracy >= 0.75
    assert np.mean(real) > np.mean(generated) + 0.3


def test_uploaded_camera_footage_is_caught_by_the_gate(
    tmp_path: Path, dev_backbone: Backbone, dev_config: ModeratorConfig, h264: VideoWriter
) -> None:
    report = train_head(
        realness_folder(tmp_path / "train", range(30)), tmp_path / "probe", dev_backbone, positive_label="real"
    )
    source = h264(tmp_path / "source.mp4", [camera_like(400 + i // 4) for i in range(32)], fps=4)
    video = h264(tmp_path / "remix.mp4", [synthesize_scene(9, 128, 96)] * 8, fps=4)
    config = replace(dev_config, realness_head=report.head_path, realness_threshold=0.5, realness_review_band=0.0)
    payload = (
        moderate_video(video, ModerationContext(config=config, source_media=[source]))
        .to_payload()
        .model_dump(mode="json")
    )
    (entry,) = [c for c in payload["classifiers"] if c["name"] == "realness_probe"]
    assert entry["outcome"] == "block" and payload["verdict"] == "block"
    assert entry["model_hash"] == load_head(report.head_path).sha256
    assert entry["detail"]["source_sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()

    without_probe = moderate_video(video, ModerationContext(config=dev_config, source_media=[source]))
    assert without_probe.verdict == "review"
    assert any("no real-footage probe" in reason for reason in without_probe.reasons)


def test_probe_must_be_trained_for_the_real_label(tmp_path: Path, dev_backbone: Backbone) -> None:
    report = train_head(
        realness_folder(tmp_path / "train", range(4)), tmp_path / "h", dev_backbone, positive_label="generated"
    )
    with pytest.raises(ModelLoadError, match="positive label 'real'"):
        RealnessProbe(dev_backbone, RealnessConfig(report.head_path))


def test_fit_logistic_learns_a_linear_rule() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 5))
    y = (x[:, 0] - 0.5 * x[:, 3] > 0.2).astype(float)
    weight, bias = fit_logistic(x, y, l2=1e-4)
    predicted = (x @ weight + bias) > 0
    assert (predicted == (y > 0.5)).mean() > 0.97
    with pytest.raises(InvalidInput, match="both"):
        fit_logistic(x, np.zeros(400))


def test_threshold_for_target_precision() -> None:
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    actual = np.array([1, 1, 0, 1, 0, 0], dtype=float)
    assert threshold_for_precision(scores, actual, 1.0) == (0.8, 2 / 3)
    assert threshold_for_precision(scores, actual, 0.75) == (0.6, 1.0)
    assert threshold_for_precision(np.array([0.5, 0.5]), np.array([1.0, 0.0]), 0.9) is None


def test_bad_training_folders(tmp_path: Path, dev_backbone: Backbone) -> None:
    with pytest.raises(InvalidInput, match="not a folder"):
        train_head(tmp_path / "absent", tmp_path / "h", dev_backbone, positive_label="x")
    (tmp_path / "empty" / "a").mkdir(parents=True)
    with pytest.raises(InvalidInput, match="no images or videos"):
        train_head(tmp_path / "empty", tmp_path / "h", dev_backbone, positive_label="a")
    save_png(tmp_path / "one" / "a" / "x.png", synthesize_scene(1, 32, 32))
    with pytest.raises(InvalidInput, match="no subfolder named 'b'"):
        train_head(tmp_path / "one", tmp_path / "h", dev_backbone, positive_label="b")
    with pytest.raises(InvalidInput, match="at least two label subfolders"):
        train_head(tmp_path / "one", tmp_path / "h", dev_backbone, positive_label="a")
    assert not (tmp_path / "h.safetensors").exists()


def test_evaluate_a_policy_category(tmp_path: Path, dev_backbone: Backbone, splatter: Splatter) -> None:
    folder = splatter_folder(tmp_path / "eval", range(3), splatter)
    policy = tmp_path / "p.yaml"
    policy.write_text(
        "schema: provenance-moderation-policy/1\nname: p\nversion: 1\n"
        "categories:\n  splatter:\n    prompts: [red blood]\n    threshold: -1.0\n"
    )
    report = evaluate(folder, dev_backbone, policy=policy, category="splatter")
    assert report.threshold == -1.0
    assert (report.true_positives, report.false_positives) == (3, 3)  # everything fires at -1
    with pytest.raises(InvalidInput, match="needs a head file or a policy category"):
        evaluate(folder, dev_backbone)
