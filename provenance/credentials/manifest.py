"""The C2PA manifest of a generated video: what made it, and where its history lives in our event log.

Assertions:
* `c2pa.actions.v2`: `c2pa.created` with the IPTC `trainedAlgorithmicMedia` source type and the generator
  as software agent (a remix instead `c2pa.opened` its parent and records the generation as
  `c2pa.edited`, since a manifest may hold only one created/opened action), then `c2pa.watermarked.bound`
  (C2PA 2.2: a watermark bound to this manifest by the soft binding below);
* `c2pa.soft-binding`: the watermark algorithm and payload, the key to find the manifest again when
  the file has been stripped;
* `org.provenance.log`: ids linking the file to the event log (video, events, classifiers, cameos with
  their consent grants). Only ids, versions and hashes: no names, no prompts, nothing personal;
* a JPEG poster frame as the claim thumbnail.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

from kernel.paths import utf8_named
from provenance.credentials.errors import SigningError

LOG_ASSERTION = "org.provenance.log"
LOG_ASSERTION_SCHEMA = 1
TRAINED_ALGORITHMIC_MEDIA = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
PARENT_INGREDIENT_LABEL = "parent"
THUMBNAIL_ID = "thumbnail.jpg"
_THUMBNAIL_LONG_EDGE = 512


@dataclass(frozen=True, slots=True)
class ClassifierRecord:
    name: str
    version: str
    model_sha256: str


@dataclass(frozen=True, slots=True)
class CameoUse:
    cameo_id: str
    consent_grant_id: str


@dataclass(frozen=True, slots=True)
class ManifestInputs:
    """Everything the manifest states about a video, taken from its events by the signing worker."""

    video_id: UUID
    generator_name: str
    generator_version: str
    event_ids: tuple[str, ...]
    """Ids of the events that produced the file (request, render, moderation ...)."""
    moderation_verdict: str
    classifiers: tuple[ClassifierRecord, ...] = ()
    cameos: tuple[CameoUse, ...] = ()
    development_model: bool = False
    generator_model_sha256: str | None = None
    remix_of: UUID | None = None

    def log_assertion(self) -> dict[str, Any]:
        return {
            "schema": LOG_ASSERTION_SCHEMA,
            "video_id": str(self.video_id),
            "event_ids": [str(event_id) for event_id in self.event_ids],
            "generator": {
                "name": self.generator_name,
                "version": self.generator_version,
                "model_sha256": self.generator_model_sha256,
            },
            "development_model": self.development_model,
            "moderation": {
                "verdict": self.moderation_verdict,
                "classifiers": [
                    {"name": c.name, "version": c.version, "model_sha256": c.model_sha256} for c in self.classifiers
                ],
            },
            "cameos": [{"cameo_id": c.cameo_id, "consent_grant_id": c.consent_grant_id} for c in self.cameos],
            "remix_of": str(self.remix_of) if self.remix_of else None,
        }


def manifest_definition(
    inputs: ManifestInputs,
    soft_binding: tuple[str, str],
    *,
    watermark_agent: dict[str, str],
    is_remix: bool,
    has_thumbnail: bool,
) -> dict[str, Any]:
    """The manifest definition handed to `c2pa.Builder`."""
    generator = {"name": inputs.generator_name, "version": inputs.generator_version}
    actions: list[dict[str, Any]] = []
    if is_remix:
        actions.append({"action": "c2pa.opened", "parameters": {"ingredientIds": [PARENT_INGREDIENT_LABEL]}})
        actions.append(
            {"action": "c2pa.edited", "digitalSourceType": TRAINED_ALGORITHMIC_MEDIA, "softwareAgent": generator}
        )
    else:
        actions.append(
            {"action": "c2pa.created", "digitalSourceType": TRAINED_ALGORITHMIC_MEDIA, "softwareAgent": generator}
        )
    actions.append({"action": "c2pa.watermarked.bound", "softwareAgent": watermark_agent})
    alg, value = soft_binding
    definition: dict[str, Any] = {
        "title": f"{inputs.video_id}.mp4",
        "format": "video/mp4",
        "assertions": [
            {"label": "c2pa.actions.v2", "data": {"actions": actions}},
            {
                "label": "c2pa.soft-binding",
                "data": {"alg": alg, "blocks": [{"scope": {}, "value": value}], "pad": []},
            },
            {"label": LOG_ASSERTION, "data": inputs.log_assertion()},
        ],
    }
    if has_thumbnail:
        definition["thumbnail"] = {"format": "image/jpeg", "identifier": THUMBNAIL_ID}
    return definition


def poster_frame_jpeg(video: Path, at_seconds: float = 1.0) -> bytes:
    """A JPEG of the frame at `at_seconds` (or the middle of a shorter clip), long edge at most 512 px."""
    import cv2

    with utf8_named(video) as openable:
        capture = cv2.VideoCapture(str(openable))
    try:
        if not capture.isOpened():
            raise SigningError(f"could not open {video.name} to take a poster frame")
        fps = capture.get(cv2.CAP_PROP_FPS) or 24.0
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        index = int(at_seconds * fps)
        if count:
            index = min(index, count // 2)
        capture.set(cv2.CAP_PROP_POS_FRAMES, index)
        ok, frame = capture.read()
        if not ok:
            capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, frame = capture.read()
        if not ok:
            raise SigningError(f"could not decode a poster frame from {video.name}")
    finally:
        capture.release()
    height, width = frame.shape[:2]
    scale = min(1.0, _THUMBNAIL_LONG_EDGE / max(height, width))
    if scale < 1.0:
        frame = cv2.resize(frame, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA)
    ok, encoded = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 80])
    if not ok:
        raise SigningError(f"could not encode the poster frame of {video.name} as JPEG")
    return bytes(encoded.tobytes())
