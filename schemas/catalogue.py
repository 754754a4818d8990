"""Which payload model belongs to each (stream type, event type, schema version), and how to upcast.

The write side validates every payload against the current version before recording it; readers upcast
older versions on the way in, so handlers only ever see the current shape.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from schemas import events as e
from schemas.envelope import EventEnvelope


class InvalidEvent(ValueError):
    """An event that cannot be understood: unknown type or version, or a payload that fails its schema."""


STREAM_TYPES: dict[str, tuple[str, ...]] = {
    "person": ("PersonRegistered", "Followed", "Unfollowed", "RoleGranted", "RoleRevoked"),
    "cameo": (
        "CameoRegistered",
        "ConsentGranted",
        "ConsentRevoked",
        "ConsentExpired",
        "GranteeRemoved",
        "CameoHeld",
        "CameoReviewed",
        "CameoUseRecorded",
        "CameoUseReinstated",
        "CameoErased",
    ),
    "video": (
        "GenerationRequested",
        "RemixRecorded",
        "RemixReinstated",
        "VideoRendered",
        "RenderFailed",
        "ModerationDecided",
        "VideoSigned",
        "VideoPublished",
        "VideoBlocked",
        "TakedownIssued",
        "TakedownAppealed",
        "VideoReinstated",
    ),
}

# (event type, schema version) -> payload model. Every version ever published stays here.
MODELS: dict[tuple[str, int], type[e.Payload]] = {
    ("PersonRegistered", 1): e.PersonRegistered,
    ("Followed", 1): e.Followed,
    ("Unfollowed", 1): e.Unfollowed,
    ("RoleGranted", 1): e.RoleGranted,
    ("RoleRevoked", 1): e.RoleRevoked,
    ("CameoRegistered", 1): e.CameoRegistered,
    ("ConsentGranted", 1): e.ConsentGranted,
    ("ConsentRevoked", 1): e.ConsentRevoked,
    ("ConsentExpired", 1): e.ConsentExpired,
    ("GranteeRemoved", 1): e.GranteeRemoved,
    ("CameoHeld", 1): e.CameoHeld,
    ("CameoReviewed", 1): e.CameoReviewed,
    ("CameoUseRecorded", 1): e.CameoUseRecorded,
    ("CameoUseReinstated", 1): e.CameoUseReinstated,
    ("CameoErased", 1): e.CameoErased,
    ("GenerationRequested", 1): e.GenerationRequested,
    ("RemixRecorded", 1): e.RemixRecorded,
    ("RemixReinstated", 1): e.RemixReinstated,
    ("VideoRendered", 1): e.VideoRenderedV1,
    ("VideoRendered", 2): e.VideoRendered,
    ("RenderFailed", 1): e.RenderFailed,
    ("ModerationDecided", 1): e.ModerationDecided,
    ("VideoSigned", 1): e.VideoSigned,
    ("VideoPublished", 1): e.VideoPublished,
    ("VideoBlocked", 1): e.VideoBlockedV1,
    ("VideoBlocked", 2): e.VideoBlocked,
    ("TakedownIssued", 1): e.TakedownIssued,
    ("TakedownAppealed", 1): e.TakedownAppealed,
    ("VideoReinstated", 1): e.VideoReinstated,
}

CURRENT_VERSION: dict[str, int] = {}
for _type, _version in MODELS:
    CURRENT_VERSION[_type] = max(_version, CURRENT_VERSION.get(_type, 0))

STREAM_OF: dict[str, str] = {t: stream for stream, types in STREAM_TYPES.items() for t in types}


def _video_rendered_v1_to_v2(payload: dict[str, Any]) -> dict[str, Any]:
    """v1 did not record seed, frame count, codecs or render time: derive what can be, leave the rest null."""
    return {
        **payload,
        "frame_count": round(payload["duration_s"] * payload["fps"]),
        "video_codec": "h264",
        "audio_codec": "aac" if payload["has_audio"] else None,
        "seed": None,
        "render_seconds": None,
    }


def _video_blocked_v1_to_v2(payload: dict[str, Any]) -> dict[str, Any]:
    """v1 did not name the takedown above a blocked remix: a consent-gate block read as a consent lapse."""
    return {**payload, "caused_by": None}


# (event type, from version) -> function producing the payload of version + 1.
UPCASTERS: dict[tuple[str, int], Callable[[dict[str, Any]], dict[str, Any]]] = {
    ("VideoRendered", 1): _video_rendered_v1_to_v2,
    ("VideoBlocked", 1): _video_blocked_v1_to_v2,
}


def validate_payload(event_type: str, payload: dict[str, Any] | e.Payload) -> dict[str, Any]:
    """The payload as JSON-safe data, validated against the current version of its event type."""
    version = CURRENT_VERSION.get(event_type)
    if version is None:
        raise InvalidEvent(f"unknown event type {event_type!r}")
    model = MODELS[(event_type, version)]
    if isinstance(payload, e.Payload):
        if not isinstance(payload, model):
            raise InvalidEvent(f"{type(payload).__name__} is not a payload of {event_type} v{version}")
        return payload.model_dump(mode="json")
    return _validated(model, event_type, payload).model_dump(mode="json")


def _validated(model: type[e.Payload], event_type: str, payload: dict[str, Any]) -> e.Payload:
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "payload"
        raise InvalidEvent(f"invalid {event_type} payload: {where}: {first['msg']}") from exc


def upcast_payload(event_type: str, version: int, payload: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    current = CURRENT_VERSION.get(event_type)
    if current is None:
        raise InvalidEvent(f"unknown event type {event_type!r}")
    if version < 1 or version > current:
        raise InvalidEvent(f"unknown schema version {version} of {event_type} (known: 1..{current})")
    while version < current:
        payload = UPCASTERS[(event_type, version)](payload)
        version += 1
    return version, payload


def upcast(envelope: EventEnvelope) -> EventEnvelope:
    """The envelope with its payload at the current version of its event type."""
    if CURRENT_VERSION.get(envelope.event_type) == envelope.schema_version:
        return envelope
    version, payload = upcast_payload(envelope.event_type, envelope.schema_version, envelope.payload)
    return envelope.with_payload(version, payload)


def check(envelope: EventEnvelope) -> EventEnvelope:
    """Full validation of an envelope from outside (a Kafka message, a file): type, stream and payload.

    Returns the envelope upcast to the current version. Raises `InvalidEvent` with the reason otherwise,
    which consumers use to park the event instead of blocking their partition.
    """
    stream = STREAM_OF.get(envelope.event_type)
    if stream is None:
        raise InvalidEvent(f"unknown event type {envelope.event_type!r}")
    if stream != envelope.stream_type:
        raise InvalidEvent(f"{envelope.event_type} does not belong on a {envelope.stream_type} stream")
    model = MODELS.get((envelope.event_type, envelope.schema_version))
    if model is None:
        raise InvalidEvent(f"unknown schema version {envelope.schema_version} of {envelope.event_type}")
    _validated(model, envelope.event_type, envelope.payload)
    return upcast(envelope)
