"""The int8 gate: agreement with fp32 is measured and stored, and int8 only runs above both floors."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from devkit.clip import calibration_images
from moderation import int8_gate
from moderation.backbone import Backbone, BackboneConfig, load_backbone
from moderation.config import ModerationContext, ModeratorConfig
from moderation.decision import moderate_video
from moderation.int8_gate import INT8_FILE, REPORT_FILE
from moderation.moderator import load_moderator


def fresh_backbone(config: BackboneConfig, **changes: object) -> Backbone:
    """A backbone of its own (the gate swaps its encoder), reading the session's cached export."""
    return load_backbone(replace(config, **changes))  # type: ignore[arg-type]


def first_dimension_sign(embeddings: np.ndarray) -> np.ndarray:
    return (embeddings[:, :1] > 0).astype(np.int8)


def test_int8_is_enabled_when_it_agrees_and_the_report_is_stored(dev_backbone_config: BackboneConfig) -> None:
    backbone = fresh_backbone(dev_backbone_config, int8_min_cosine=0.9, int8_min_decision_agreement=0.8)
    report = backbone.enable_int8(
        calibration_images(16, size=96), first_dimension_sign, calibration_id="cal-a", decision_id="sign"
    )
    assert report.enabled, report.reason
    assert backbone.runtime_name == "onnxruntime-int8/CPUExecutionProvider"
    assert report.samples == 16 and report.decisions_compared == 16
    assert report.min_cosine is not None and 0.9 <= report.min_cosine <= report.mean_cosine <= 1.0  # type: ignore[operator]
    assert report.decision_agreement is not None and report.decision_agreement >= 0.8
    assert backbone.onnx_dir is not None
    assert (backbone.onnx_dir / INT8_FILE).is_file()
    stored = json.loads((backbone.onnx_dir / REPORT_FILE).read_text())
    assert stored == report.to_dict()

    pixels = backbone.preprocess(calibration_images(4, size=96))
    int8 = backbone.encode_pixels(pixels)
    fp32 = backbone.encode_pixels(pixels, encoder=backbone.torch_encoder)
    assert not np.array_equal(int8, fp32)
    assert (int8 * fp32).sum(axis=1).min() > 0.9


def test_int8_falls_back_to_fp32_below_the_cosine_floor(dev_backbone_config: BackboneConfig) -> None:
    backbone = fresh_backbone(dev_backbone_config, int8_min_cosine=0.999999, int8_min_decision_agreement=0.0)
    report = backbone.enable_int8(
        calibration_images(8, size=96), first_dimension_sign, calibration_id="cal-b", decision_id="sign"
    )
    assert not report.enabled
    assert report.reason.startswith("int8 refused, running fp32: worst cosine")
    assert report.min_cosine is not None and report.min_cosine < 0.999999
    assert backbone.runtime_name == "onnxruntime-fp32/CPUExecutionProvider"
    assert backbone.int8_report == report


def test_int8_falls_back_when_decisions_disagree(dev_backbone_config: BackboneConfig) -> None:
    def hair_trigger(embeddings: np.ndarray) -> np.ndarray:
        """A decision that flips on the smallest change of an embedding."""
        return (np.floor(embeddings * 1e6).astype(np.int64) % 3).astype(np.int8)

    backbone = fresh_backbone(dev_backbone_config, int8_min_cosine=0.0, int8_min_decision_agreement=0.99)
    report = backbone.enable_int8(calibration_images(8, size=96), hair_trigger, calibration_id="c", decision_id="h")
    assert not report.enabled
    assert "decision agreement" in report.reason and "worst cosine" not in report.reason
    assert report.decision_agreement is not None and report.decision_agreement < 0.99
    assert backbone.runtime_name.startswith("onnxruntime-fp32")


def test_stored_report_is_reused_while_its_inputs_are_unchanged(
    dev_backbone_config: BackboneConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = {"int8_min_cosine": 0.9, "int8_min_decision_agreement": 0.8}
    first = fresh_backbone(dev_backbone_config, **config).enable_int8(
        calibration_images(8, size=96), first_dimension_sign, calibration_id="cal-r", decision_id="sign"
    )

    def no_measuring(*args: object, **kwargs: object) -> None:
        raise AssertionError("the stored report should have been reused")

    monkeypatch.setattr(int8_gate, "measure", no_measuring)
    again = fresh_backbone(dev_backbone_config, **config)
    assert again.enable_int8([], first_dimension_sign, calibration_id="cal-r", decision_id="sign").enabled is False
    second = again.enable_int8(
        calibration_images(8, size=96), first_dimension_sign, calibration_id="cal-r", decision_id="sign"
    )
    assert second == first and again.runtime_name.startswith("onnxruntime-int8")
    with pytest.raises(AssertionError, match="reused"):
        again.enable_int8(calibration_images(8, size=96), first_dimension_sign, calibration_id="other", decision_id="s")


def test_torch_runtime_never_quantises(dev_backbone_config: BackboneConfig) -> None:
    backbone = fresh_backbone(dev_backbone_config, runtime="torch")
    report = backbone.enable_int8(
        calibration_images(4, size=96), first_dimension_sign, calibration_id="c", decision_id="d"
    )
    assert not report.enabled and "onnxruntime" in report.reason
    assert backbone.runtime_name.startswith("torch-fp32")


def test_moderator_measures_int8_on_the_policy_and_records_the_runtime(
    dev_config: ModeratorConfig, tmp_path: object, h264: object
) -> None:
    from pathlib import Path

    from devkit.clip import synthesize_scene

    config = replace(dev_config, backbone=replace(dev_config.backbone, quantize_int8=True, int8_min_cosine=0.9))
    moderator = load_moderator(config)
    report = moderator.int8_report
    assert report is not None and report.enabled, report
    assert report.decision_id == f"{moderator.policy.sha256}:{moderator.backbone.model_hash}"
    assert report.decisions_compared == report.samples * len(moderator.policy.categories)
    video = h264(Path(str(tmp_path)) / "v.mp4", [synthesize_scene(1, 96, 64)] * 4, fps=4)  # type: ignore[operator]
    payload = moderate_video(video, ModerationContext(config=config)).to_payload().model_dump(mode="json")
    assert {c["detail"]["runtime"] for c in payload["classifiers"]} == {"onnxruntime-int8/CPUExecutionProvider"}
