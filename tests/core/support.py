"""Small helpers for write-side tests: gate results as the workers would record them."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any
from uuid import UUID

from hypothesis import strategies as st

from provenance.application import ProvenanceApp
from provenance.domain.payloads import payload
from schemas import events as e

SHA = "ab" * 32


class ProcessDied(BaseException):
    """The process dying at the worst moment: no handler catches it, as none would catch a kill."""


@functools.cache
def face(identity: int = 0) -> bytes:
    """A PNG of a synthetic face that the reference check accepts (one face, found by OpenCV's cascade)."""
    from devkit.clip import synthesize_face
    from provenance.stages import encode_png

    return encode_png(synthesize_face(identity, 256))


AppFactory = Callable[[], ProvenanceApp]


def rendered(**overrides: Any) -> e.VideoRendered:
    return payload(
        e.VideoRendered,
        **{
            "content_sha256": SHA,
            "blob_uri": f"blob:sha256:{SHA}",
            "size_bytes": 1234,
            "duration_s": 2.0,
            "fps": 24,
            "width": 144,
            "height": 256,
            "has_audio": True,
            "generator": {"name": "reference", "version": "1", "model_hash": "cd" * 32},
            "device": "cpu",
            "frame_count": 48,
            "video_codec": "h264",
            "audio_codec": "aac",
            "seed": 7,
            "render_seconds": 0.5,
            **overrides,
        },
    )


def moderation(verdict: str = "allow") -> e.ModerationDecided:
    return e.ModerationDecided.model_validate(
        {
            "verdict": verdict,
            "development_model": True,
            "sampled_frames": 2,
            "duration_s": 2.0,
            "classifiers": [
                {
                    "name": "policy.violence",
                    "version": "1",
                    "model_hash": "ef" * 32,
                    "label": "violence",
                    "score": 0.9 if verdict == "block" else 0.1,
                    "threshold": 0.5,
                    "outcome": verdict,
                    "segments": [{"start_s": 0.0, "end_s": 1.0, "score": 0.9}] if verdict == "block" else [],
                    "development_model": True,
                }
            ],
            "reasons": ["policy.violence above threshold"] if verdict == "block" else [],
        }
    )


def signature(video_id: UUID | str) -> e.VideoSigned:
    return e.VideoSigned.model_validate(
        {
            "manifest_id": f"urn:c2pa:{video_id}",
            "manifest_sha256": "12" * 32,
            "manifest_uri": "blob:sha256:" + "12" * 32,
            "signed_sha256": "34" * 32,
            "signed_uri": "blob:sha256:" + "34" * 32,
            "certificate_fingerprint": "56" * 32,
            "signer": "provenance development signer",
            "soft_binding": {"alg": "org.provenance.dct-qim.v1", "value": str(video_id)[:16]},
            "development_pki": True,
        }
    )


def pass_gates(app: ProvenanceApp, video_id: UUID | str, verdict: str = "allow") -> None:
    """Record render, moderation and signature results, with command ids derived as the workers derive them."""
    app.record_render(video_id, rendered(), command_id=f"render:{video_id}")
    app.record_moderation(video_id, moderation(verdict), command_id=f"moderate:{video_id}")
    if verdict == "allow":
        app.record_signature(video_id, signature(video_id), command_id=f"sign:{video_id}")


def mutuals_with_a_video(app: ProvenanceApp) -> tuple[UUID, UUID, UUID, UUID]:
    """alice and bob follow each other; alice's cameo is granted to her mutuals; bob published a video with it.
    Returns alice, bob, the cameo and the video."""
    alice, bob = app.register_person("alice"), app.register_person("bob")
    app.follow(alice, bob)
    app.follow(bob, alice)
    cameo = app.register_cameo(alice, face())
    app.grant_consent(alice, cameo, "mutuals")
    return alice, bob, cameo, publish_new(app, bob, cameo_ids=[cameo])


def publish_new(app: ProvenanceApp, creator: UUID, prompt: str = "a ball", **kwargs: Any) -> UUID:
    video_id = app.request_generation(creator, prompt, **kwargs)
    pass_gates(app, video_id)
    outcome = app.publish(video_id)
    assert outcome.published, outcome.reasons
    return video_id


JSON_NUMBERS = st.integers(min_value=-(2**80), max_value=2**80) | st.floats(allow_nan=True, allow_infinity=True)
"""Numbers a JSON document may hold: integers past 64 bits, NaN and infinities included."""


def same(a: Any, b: Any) -> bool:
    """Equal values and equal types all the way down (NaN equal to NaN; 1 and 1.0 told apart)."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)
