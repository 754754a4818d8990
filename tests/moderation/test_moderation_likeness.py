"""Likeness end to end: a synthetic face composited into an H.264 video, found, embedded and matched.

The devkit backbone has random weights, so it tells faces apart by colour and layout rather than by
identity; the cameos compared here differ in skin tone and hair, as two real people's photos would
differ to a trained model. What is tested is the path: detection, cropping, embedding, comparison,
grants and protected people, and the decision they lead to.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from devkit.clip import synthesize_face, synthesize_scene
from kernel.errors import InvalidInput
from moderation.backbone import Backbone
from moderation.config import ModerationContext, ModeratorConfig
from moderation.decision import moderate_video
from moderation.errors import ModelLoadError
from moderation.likeness import (
    CameoReference,
    FaceDetector,
    LikenessConfig,
    LikenessScorer,
    ProtectedPeople,
    build_protected_people,
)
from moderation.sampling import SamplingConfig, VideoSampler

VideoWriter = Callable[..., Path]
IN_VIDEO, OTHER = 3, 1  # the face drawn into the video, and a different person


@pytest.fixture
def cameo_video(tmp_path: Path, h264: VideoWriter, paste_face: Callable[..., np.ndarray]) -> Path:
    """3 s at 8 fps; identity IN_VIDEO's face (170 px) is on screen from 1.0 s to the end."""
    background = synthesize_scene(5, 320, 240)
    frames = [paste_face(background, IN_VIDEO) if i >= 8 else background for i in range(24)]
    return h264(tmp_path / "cameo.mp4", frames, fps=8, options={"crf": "26"})


def entries(payload: dict[str, Any], name: str) -> dict[str, dict[str, Any]]:
    return {str(c["label"]): c for c in payload["classifiers"] if c["name"] == name}


@pytest.mark.parametrize("identity", [0, 3, 4, 9, 13, 22, 37, 51])
def test_synthetic_faces_are_found_by_the_haar_cascade(identity: int) -> None:
    detector = FaceDetector(LikenessConfig())
    boxes = detector.boxes(synthesize_face(identity))
    assert len(boxes) == 1
    x, y, w, h = boxes[0]
    assert 80 <= w <= 220 and 60 <= x + w / 2 <= 196 and 60 <= y + h / 2 <= 220


def test_faces_survive_compositing_and_h264(
    tmp_path: Path, h264: VideoWriter, paste_face: Callable[..., np.ndarray]
) -> None:
    """Thirty identities at 170 px in 320x240 frames, H.264 at crf 28: the cascade still finds them."""
    frames = [
        paste_face(synthesize_scene(i % 5, 320, 240), identity=100 + i, at=(10 + 2 * i, 5 + 4 * i)) for i in range(30)
    ]
    video = h264(tmp_path / "faces.mp4", frames, fps=10, options={"crf": "28"})
    detector = FaceDetector(LikenessConfig())
    sampler = VideoSampler(video, SamplingConfig(fps=10))
    found = [len(detector.boxes(sample.image)) for batch in sampler.batches() for sample in batch]
    assert len(found) == 30
    assert sum(count == 1 for count in found) >= 28


def test_identities_change_the_drawing() -> None:
    faces = [synthesize_face(i, 96) for i in range(6)]
    assert all(not np.array_equal(faces[0], other) for other in faces[1:])
    assert np.array_equal(synthesize_face(4, 96), synthesize_face(4, 96))


def test_cameo_without_a_grant_is_matched_and_blocks(cameo_video: Path, dev_config: ModeratorConfig) -> None:
    context = ModerationContext(
        config=dev_config,
        cameos={
            "cameo-in-video": CameoReference.from_image(synthesize_face(IN_VIDEO)),
            "someone-else": CameoReference.from_image(synthesize_face(OTHER)),
        },
    )
    payload = moderate_video(cameo_video, context).to_payload().model_dump(mode="json")
    found = entries(payload, "likeness")
    matched, other = found["cameo:cameo-in-video"], found["cameo:someone-else"]
    assert payload["verdict"] == "block"
    assert matched["outcome"] == "block"
    assert matched["segments"] == [{"start_s": 1.0, "end_s": 3.0, "score": matched["score"]}]
    assert other["outcome"] == "allow" and other["segments"] == []
    assert matched["score"] > other["score"] + 0.1
    assert any("cameo cameo-in-video" in reason and "no live grant" in reason for reason in payload["reasons"])


def test_cameo_under_a_live_grant_is_recorded_and_allowed(cameo_video: Path, dev_config: ModeratorConfig) -> None:
    context = ModerationContext(
        config=dev_config,
        cameos={"cameo-in-video": CameoReference.from_image(synthesize_face(IN_VIDEO))},
        grants={"cameo-in-video": "grant-42"},
    )
    payload = moderate_video(cameo_video, context).to_payload().model_dump(mode="json")
    entry = entries(payload, "likeness")["cameo:cameo-in-video"]
    assert entry["outcome"] == "allow"
    assert entry["detail"] == {
        "kind": "cameo",
        "faces": 3,  # at 1 s and 2 s, and the clip's last frame
        "cameo_id": "cameo-in-video",
        "grant_id": "grant-42",
        "runtime": "onnxruntime-fp32/CPUExecutionProvider",
    }
    assert entry["segments"] == [{"start_s": 1.0, "end_s": 3.0, "score": entry["score"]}]
    assert not any(c["outcome"] == "block" for c in payload["classifiers"])


def test_reference_given_as_an_embedding(
    cameo_video: Path, dev_config: ModeratorConfig, dev_backbone: Backbone
) -> None:
    scorer = LikenessScorer(dev_backbone)
    embedding = scorer.face_embeddings(synthesize_face(IN_VIDEO))[0]
    context = ModerationContext(
        config=dev_config, cameos={"c": CameoReference.from_embedding(embedding, dev_backbone.model_hash)}
    )
    assert moderate_video(cameo_video, context).verdict == "block"


def test_protected_person_blocks(
    cameo_video: Path, dev_config: ModeratorConfig, dev_backbone: Backbone, tmp_path: Path
) -> None:
    scorer = LikenessScorer(dev_backbone)
    people = build_protected_people(
        {"famous person": [synthesize_face(IN_VIDEO)], "another person": [synthesize_face(OTHER)]},
        scorer,
        tmp_path / "protected.safetensors",
    )
    config = replace(dev_config, protected_people=people)
    payload = moderate_video(cameo_video, ModerationContext(config=config)).to_payload().model_dump(mode="json")
    found = entries(payload, "likeness")
    assert set(found) == {"protected:famous person"}
    assert found["protected:famous person"]["outcome"] == "block"
    assert payload["verdict"] == "block"


def test_protected_people_check_is_on_record_when_nobody_matches(
    tmp_path: Path,
    h264: VideoWriter,
    paste_face: Callable[..., np.ndarray],
    dev_config: ModeratorConfig,
    dev_backbone: Backbone,
) -> None:
    people = build_protected_people(
        {"another person": [synthesize_face(OTHER)]}, LikenessScorer(dev_backbone), tmp_path / "p.safetensors"
    )
    frames = [paste_face(synthesize_scene(5, 320, 240), IN_VIDEO)] * 8
    video = h264(tmp_path / "v.mp4", frames, fps=8)
    payload = (
        moderate_video(video, ModerationContext(config=replace(dev_config, protected_people=people)))
        .to_payload()
        .model_dump(mode="json")
    )
    summary = entries(payload, "likeness")["protected_people"]
    assert summary["outcome"] == "allow"
    assert summary["detail"] == {
        "kind": "protected",
        "people_compared": 1,
        "faces": 2,  # the first and the last frame of a one-second clip
        "runtime": "onnxruntime-fp32/CPUExecutionProvider",
    }


def test_protected_people_file_for_another_backbone_is_refused(dev_backbone: Backbone, tmp_path: Path) -> None:
    vectors = np.ones((1, dev_backbone.embed_dim), np.float32)
    path = ProtectedPeople({"x": vectors}, backbone_model_hash="0" * 64).save(tmp_path / "p.safetensors")
    with pytest.raises(ModelLoadError, match="another backbone"):
        ProtectedPeople.load(path, dev_backbone)
    (tmp_path / "junk.safetensors").write_bytes(b"junk")
    with pytest.raises(ModelLoadError, match="corrupt"):
        ProtectedPeople.load(tmp_path / "junk.safetensors", dev_backbone)


def test_reference_image_without_a_face(dev_backbone: Backbone) -> None:
    scorer = LikenessScorer(dev_backbone)
    with pytest.raises(InvalidInput, match="no face found in the reference image of cameo c9"):
        scorer.reference_embeddings("c9", CameoReference.from_image(synthesize_scene(2, 256, 256)))


def test_reference_embedding_of_the_wrong_size(dev_backbone: Backbone) -> None:
    scorer = LikenessScorer(dev_backbone)
    with pytest.raises(InvalidInput, match=r"expected \(k, 64\)"):
        scorer.reference_embeddings("c1", CameoReference.from_embedding(np.ones(12)))
    with pytest.raises(InvalidInput, match="another backbone"):
        scorer.reference_embeddings("c1", CameoReference.from_embedding(np.ones(64), model_hash="f" * 64))


def _index(dev_backbone: Backbone, cameos: dict[str, np.ndarray], strangers: int) -> Any:
    from moderation.likeness_index import LikenessIndex

    scorer = LikenessScorer(dev_backbone)
    rng = np.random.default_rng(7)
    index = LikenessIndex(dev_backbone.embed_dim, dev_backbone.model_hash)
    added = {key: ("owner-" + key, scorer.face_embeddings(face)[0]) for key, face in cameos.items()}
    added |= {f"stranger-{n}": ("someone", rng.normal(size=dev_backbone.embed_dim)) for n in range(strangers)}
    index.update(added, set())
    return index


def test_the_index_finds_the_cameo_among_many_and_only_it_gets_a_track(
    cameo_video: Path, dev_config: ModeratorConfig, dev_backbone: Backbone
) -> None:
    index = _index(dev_backbone, {"cameo-in-video": synthesize_face(IN_VIDEO), "other": synthesize_face(OTHER)}, 500)
    payload = moderate_video(cameo_video, ModerationContext(config=dev_config, index=index)).to_payload()
    found = entries(payload.model_dump(mode="json"), "likeness")
    assert payload.verdict == "block" and found["cameo:cameo-in-video"]["outcome"] == "block"
    assert "cameo:other" not in found and not any(k.startswith("cameo:stranger") for k in found)
    summary = found["registered_cameos"]
    assert summary["detail"]["cameos_compared"] == 502 and summary["outcome"] == "allow"

    index.usable = lambda key: key != "cameo-in-video"  # held for review: never a match
    held = moderate_video(cameo_video, ModerationContext(config=dev_config, index=index)).to_payload()
    assert "cameo:cameo-in-video" not in entries(held.model_dump(mode="json"), "likeness")
    index.usable = lambda key: True
    index.grant_for = lambda key, owner: "grant-7" if key == "cameo-in-video" else None
    allowed = moderate_video(cameo_video, ModerationContext(config=dev_config, index=index)).to_payload()
    entry = entries(allowed.model_dump(mode="json"), "likeness")["cameo:cameo-in-video"]
    assert allowed.verdict != "block" and entry["outcome"] == "allow" and entry["detail"]["grant_id"] == "grant-7"


def test_the_index_drops_an_erased_cameo(
    cameo_video: Path, dev_config: ModeratorConfig, dev_backbone: Backbone
) -> None:
    index = _index(dev_backbone, {"cameo-in-video": synthesize_face(IN_VIDEO)}, 10)
    index.update({}, {"cameo-in-video"})
    payload = moderate_video(cameo_video, ModerationContext(config=dev_config, index=index)).to_payload()
    assert "cameo:cameo-in-video" not in entries(payload.model_dump(mode="json"), "likeness")
    assert len(index) == 10
