"""Policy files: the shipped default, malformed files, prompt scoring and the prompt-embedding cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from devkit.clip import synthesize_scene
from moderation.backbone import Backbone
from moderation.errors import PolicyError
from moderation.policy import PolicyScorer, default_policy_path, load_policy

VALID = """
schema: provenance-moderation-policy/1
name: test
version: "2"
defaults: {threshold: 0.3, review_band: 0.05}
categories:
  gore:
    label: Gore
    prompts: [a bloody wound, red blood splatter]
  flags:
    threshold: 0.2
    review_band: 0.0
    prompts: [a flag]
"""


def write(tmp_path: Path, text: str, name: str = "policy.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_default_policy_ships_the_required_categories() -> None:
    policy = load_policy()
    assert policy.path == default_policy_path()
    ids = {c.id for c in policy.categories}
    assert {"sexual_content", "violence_gore", "self_harm", "hate_symbols", "minors_unsafe"} <= ids
    for category in policy.categories:
        assert category.prompts and 0 < category.threshold < 1 and category.review_band > 0
    assert len(policy.sha256) == 64 and policy.version


def test_defaults_and_overrides(tmp_path: Path) -> None:
    policy = load_policy(write(tmp_path, VALID))
    gore, flags = policy.categories
    assert (gore.id, gore.label, gore.threshold, gore.review_band) == ("gore", "Gore", 0.3, 0.05)
    assert (flags.label, flags.threshold, flags.review_band) == ("flags", 0.2, 0.0)
    assert policy.category("gore") is gore
    with pytest.raises(PolicyError, match="no category 'nope'"):
        policy.category("nope")


def test_json_policies_are_read_too(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '{"schema": "provenance-moderation-policy/1", "name": "j", "version": 1,'
        ' "categories": {"a": {"prompts": ["x"], "threshold": 0.1}}}',
        "p.json",
    )
    assert load_policy(path).categories[0].threshold == 0.1


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("schema: other/1\nname: x\nversion: 1\ncategories: {a: {prompts: [x], threshold: 0.2}}", "'schema'"),
        (VALID.replace("threshold: 0.2", "threshold: 3"), "threshold must be a number between -1.0 and 1.0"),
        (VALID.replace("prompts: [a flag]", "prompts: []"), "needs prompts, a head, or both"),
        (VALID.replace("  flags:", "  Bad-Id:"), "ids are lower-case"),
        (VALID.replace('version: "2"', ""), "'version' is required"),
        ("schema: [unclosed", "not valid YAML/JSON"),
        (VALID.replace("prompts: [a flag]", "prompts: [a flag]\n    head: heads/x"), "'head' must be a mapping"),
    ],
)
def test_malformed_policies_give_one_line_errors(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(PolicyError, match=message) as raised:
        load_policy(write(tmp_path, text))
    assert "\n" not in str(raised.value)


def test_missing_policy_file(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="policy file not found"):
        load_policy(tmp_path / "absent.yaml")


def test_missing_head_file_is_a_model_error(tmp_path: Path, dev_backbone: Backbone) -> None:
    from moderation.errors import ModelLoadError

    text = VALID.replace("prompts: [a flag]", "prompts: [a flag]\n    head: {file: heads/absent.safetensors}")
    policy = load_policy(write(tmp_path, text))
    with pytest.raises(ModelLoadError, match="head weights not found"):
        PolicyScorer(policy, dev_backbone, cache_dir=tmp_path)


def test_prompt_score_is_the_best_cosine_over_the_prompts(tmp_path: Path, dev_backbone: Backbone) -> None:
    policy = load_policy(write(tmp_path, VALID))
    scorer = PolicyScorer(policy, dev_backbone, cache_dir=tmp_path)
    images = dev_backbone.encode_images([synthesize_scene(i, 96, 96) for i in range(4)])
    scored = scorer.score(images)
    assert [(spec.name, spec.label, spec.threshold) for spec, _ in scored] == [
        ("policy.prompts", "gore", 0.3),
        ("policy.prompts", "flags", 0.2),
    ]
    expected = (images @ dev_backbone.encode_texts(["a bloody wound", "red blood splatter"]).T).max(axis=1)
    assert np.allclose(scored[0][1], expected, atol=1e-5)
    spec = scored[0][0]
    assert spec.model_hash == dev_backbone.model_hash
    assert spec.version == "test@2" and spec.detail["policy_sha256"] == policy.sha256
    assert spec.development_model is True


def test_prompt_embeddings_are_computed_once_per_policy_file(
    tmp_path: Path, dev_backbone: Backbone, monkeypatch: pytest.MonkeyPatch
) -> None:
    policy = load_policy(write(tmp_path, VALID))
    first = PolicyScorer(policy, dev_backbone, cache_dir=tmp_path)
    assert len(list((tmp_path / "text").glob("*.npz"))) == 1

    def fail(prompts: object) -> None:
        raise AssertionError("prompts should come from the cache")

    monkeypatch.setattr(dev_backbone, "encode_texts", fail)
    second = PolicyScorer(policy, dev_backbone, cache_dir=tmp_path)
    assert all(np.array_equal(first.concepts[k], second.concepts[k]) for k in first.concepts)

    changed = load_policy(write(tmp_path, VALID.replace("a flag", "a banner")))
    with pytest.raises(AssertionError, match="from the cache"):
        PolicyScorer(changed, dev_backbone, cache_dir=tmp_path)
