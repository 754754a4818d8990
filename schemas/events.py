"""Event catalogue v1: the payload of every event type, per schema version.

These models are the public contract. A published (type, version) is never changed incompatibly: a change
adds a new version here and an upcaster in `schemas.upcasters`, and the JSON Schema files under
`schemas/json/` are regenerated (a test fails while they are stale).

Identifiers are strings (UUIDs in canonical form) and times are ISO 8601 with a timezone, so that the
payloads read the same in every language. Media never appears here: only hashes and `blob:` URIs.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Payload(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


Audience = Literal["only_me", "approved", "mutuals", "everyone"]
Purpose = Literal["generate", "remix"]
Verdict = Literal["allow", "block", "review"]
Gate = Literal["consent", "render", "moderation", "signing"]
TakedownSource = Literal["notice", "own_initiative", "consent_revocation", "consent_expiry", "cascade", "cameo_owner"]


# --- person stream -------------------------------------------------------------------------------------


class PersonRegistered(Payload):
    handle: str = Field(min_length=1, max_length=64)
    display_name: str = Field(max_length=200)
    roles: list[Literal["member", "trust_and_safety"]]


class Followed(Payload):
    person_id: str


class Unfollowed(Payload):
    person_id: str


Role = Literal["member", "trust_and_safety", "auditor", "administrator"]
"""What a person may do besides their own things: moderate (trust and safety), read everything (auditor),
grant roles (administrator)."""


class RoleGranted(Payload):
    role: Role


class RoleRevoked(Payload):
    role: Role
    reason: str = Field(min_length=1, max_length=2000)


# --- cameo stream --------------------------------------------------------------------------------------


class Verification(Payload):
    method: str
    status: Literal["verified", "unverified"]


class CameoRegistered(Payload):
    owner_id: str
    reference_media_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    encrypted_reference: str = Field(description="base64 AES-GCM ciphertext of the likeness reference")
    key_id: str
    verification: Verification


class ConsentGranted(Payload):
    grant_id: str
    audience: Audience
    grantees: list[str] = Field(default_factory=list, description="person ids, for audience 'approved'")
    scope: list[Purpose]
    expires_at: datetime | None = None


class ConsentRevoked(Payload):
    grant_id: str
    reason: str = Field(min_length=1, max_length=2000)


class GranteeRemoved(Payload):
    """A person taken off the approved list of a grant: the grant no longer reaches them."""

    grant_id: str
    person_id: str


class ConsentExpired(Payload):
    """A grant's expiry time passed; recorded by the expiry timer so that the end of consent is on record."""

    grant_id: str
    expired_at: datetime


class CameoHeld(Payload):
    """The likeness matches another person's cameo: inactive until trust and safety decides."""

    matched_cameo_id: str
    similarity: float
    reason: str = Field(min_length=1, max_length=2000)


class CameoReviewed(Payload):
    """Trust and safety's decision on a held cameo: `cleared` makes it active, `rejected` never."""

    decision: Literal["cleared", "rejected"]
    statement: str = Field(min_length=1, max_length=5000)


class CameoUseRecorded(Payload):
    video_id: str
    creator_id: str
    grant_id: str


class CameoUseReinstated(Payload):
    """Trust and safety put a video with this cameo back up (its `VideoReinstated`, in the same transaction).

    Recorded so that the reinstatement, which checked this cameo's consent, conflicts with a revocation or an
    erasure another process records meanwhile: one of the two runs again on what the other recorded.
    """

    video_id: str
    case_id: str


class CameoErased(Payload):
    key_id: str
    reason: str


# --- video stream --------------------------------------------------------------------------------------


class CameoInVideo(Payload):
    cameo_id: str
    grant_id: str


class GenerationParameters(Payload):
    """What the renderer needs besides the prompt and seed; validated before anything is recorded."""

    duration_s: float = Field(default=4.0, ge=0.5, le=60)
    fps: int = Field(default=24, ge=1, le=60)
    width: int = Field(default=576, ge=64, le=2160, multiple_of=2)
    height: int = Field(default=1024, ge=64, le=2160, multiple_of=2)
    backend: str = Field(default="reference", min_length=1, max_length=100)


class GenerationRequested(Payload):
    creator_id: str
    prompt: str = Field(min_length=1, max_length=1000)
    parameters: GenerationParameters
    seed: int = Field(ge=0, le=2**63 - 1)
    cameos: list[CameoInVideo] = Field(default_factory=list)
    remix_of: str | None = None


class RemixRecorded(Payload):
    child_id: str
    creator_id: str


class RemixReinstated(Payload):
    """Trust and safety put a remix of this video back up (its `VideoReinstated`, in the same transaction).

    Recorded so that the reinstatement, which checked that this video is live, conflicts with a takedown of it
    another process records meanwhile: one of the two runs again on what the other recorded.
    """

    child_id: str
    case_id: str


class GeneratorInfo(Payload):
    name: str
    version: str
    model_hash: str


class VideoRenderedV1(Payload):
    content_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    blob_uri: str
    size_bytes: int = Field(ge=0)
    duration_s: float = Field(gt=0)
    fps: float = Field(gt=0)
    width: int = Field(gt=0)
    height: int = Field(gt=0)
    has_audio: bool
    generator: GeneratorInfo
    device: str


class VideoRendered(VideoRenderedV1):
    """v2 adds what a re-render needs to be reproduced and audited: seed, frame count, codecs, render time."""

    frame_count: int = Field(ge=0)
    video_codec: str
    audio_codec: str | None
    seed: int | None
    render_seconds: float | None


class RenderFailed(Payload):
    reason: str
    retryable: bool = False


class Segment(Payload):
    start_s: float
    end_s: float
    score: float


class ClassifierResult(Payload):
    name: str
    version: str
    model_hash: str
    label: str
    score: float
    threshold: float
    outcome: Verdict
    segments: list[Segment] = Field(default_factory=list)
    development_model: bool = False
    detail: dict[str, str | int | float | bool | None] = Field(default_factory=dict)


class ModerationDecided(Payload):
    verdict: Verdict
    development_model: bool
    sampled_frames: int = Field(ge=0)
    duration_s: float = Field(ge=0)
    classifiers: list[ClassifierResult]
    reasons: list[str] = Field(default_factory=list)


class SoftBinding(Payload):
    alg: str
    value: str


class VideoSigned(Payload):
    manifest_id: str
    manifest_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    manifest_uri: str
    signed_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    signed_uri: str
    certificate_fingerprint: str
    signer: str
    soft_binding: SoftBinding
    development_pki: bool


class VideoPublished(Payload):
    consent_checked: list[CameoInVideo] = Field(default_factory=list)


class EventRef(Payload):
    event_id: str
    stream_id: str


class VideoBlockedV1(Payload):
    gate: Gate
    reasons: list[str] = Field(min_length=1)


class VideoBlocked(VideoBlockedV1):
    """v2 names what blocked a remix in flight because the video it remixes came down: that takedown (whose
    case, or the case its cascade began with, says why, as for a remix taken down in the cascade)."""

    caused_by: EventRef | None = None


class TakedownIssued(Payload):
    case_id: str
    reason_code: str = Field(min_length=1, max_length=100)
    policy_clause: str | None = None
    legal_ground: str | None = None
    source: TakedownSource
    automated: bool
    statement_of_reasons: str = Field(min_length=1, max_length=5000)
    caused_by: EventRef | None = None


class TakedownAppealed(Payload):
    case_id: str
    grounds: str = Field(min_length=1, max_length=5000)


class VideoReinstated(Payload):
    case_id: str
    decision: str = Field(min_length=1, max_length=5000)
