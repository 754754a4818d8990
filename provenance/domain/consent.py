"""The consent rules: who may put a likeness on screen, for what, and until when.

Pure functions over the cameo aggregate and the clock, so every rule can be tested without a store. The
application service asks them at request, publish and reinstatement time and on every revocation; the
follow graph is passed in as a question (`is_mutual`) because it lives in other aggregates.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from kernel.errors import ConsentError

if TYPE_CHECKING:
    from provenance.domain.cameo import Cameo
    from provenance.domain.video import Video

OWNER_GRANT = "owner"
"""The grant id recorded when the owner puts their own likeness in a video: no grant is needed for that."""


@dataclass
class Grant:
    grant_id: str
    audience: str
    grantees: frozenset[str]
    scope: frozenset[str]
    expires_at: datetime | None
    granted_at: datetime
    revoked_at: datetime | None = None
    revoke_reason: str | None = None
    revocation_event_id: str | None = None
    expiry_event_id: str | None = None
    narrowing_event_id: str | None = None
    """The last time a person was taken off the approved list."""
    """Set once the expiry timer recorded that the grant expired."""

    def reaches(self, person_id: str, is_mutual: Callable[[], bool]) -> bool:
        """Whether the audience of this grant includes the person (live or not)."""
        if self.audience == "everyone":
            return True
        if self.audience == "approved":
            return person_id in self.grantees
        if self.audience == "mutuals":
            return is_mutual()
        return False  # only_me: the owner, who needs no grant

    def is_live(self, now: datetime) -> bool:
        return self.revoked_at is None and (self.expires_at is None or now < self.expires_at)


def purpose_of(cameo_id: str, inherited: Collection[str]) -> str:
    """The scope of consent a video uses a likeness under: `remix` for one it inherits from the video it
    remixes, `generate` for one it puts in itself (a remix may add cameos of its own), as its request checked."""
    return "remix" if cameo_id in inherited else "generate"


def covering_grant(cameo: Cameo, person_id: str, purpose: str, now: datetime, is_mutual: Callable[[], bool]) -> str:
    """The id of a live grant that lets the person use this likeness for the purpose.

    Raises `ConsentError` saying why not: erased, revoked, expired, out of scope, or never granted.
    """
    if cameo.erased:
        raise ConsentError(f"cameo {cameo.id} was erased by its owner")
    if cameo.held is not None:
        raise ConsentError(f"cameo {cameo.id} is held for a trust-and-safety review: {cameo.held}")
    if cameo.rejected:
        raise ConsentError(f"cameo {cameo.id} was rejected by trust and safety")
    if person_id == cameo.owner_id:
        return OWNER_GRANT
    reaching = [g for g in cameo.grants.values() if g.reaches(person_id, is_mutual)]
    in_scope = [g for g in reaching if purpose in g.scope]
    for grant in in_scope:
        if grant.is_live(now):
            return grant.grant_id
    if not reaching:
        raise ConsentError(f"the owner of cameo {cameo.id} has not granted consent to {person_id}")
    if not in_scope:
        raise ConsentError(f"consent for cameo {cameo.id} does not cover {purpose!r}")
    latest = max(in_scope, key=lambda g: g.revoked_at or g.expires_at or g.granted_at)
    if latest.revoked_at is not None:
        raise ConsentError(
            f"consent {latest.grant_id} for cameo {cameo.id} was revoked at {latest.revoked_at.isoformat()}"
        )
    assert latest.expires_at is not None
    raise ConsentError(f"consent {latest.grant_id} for cameo {cameo.id} expired at {latest.expires_at.isoformat()}")


@dataclass(frozen=True)
class Coverage:
    granted: dict[str, str]
    """cameo id -> the live grant that covers it now, for each covered cameo."""
    reasons: list[str]
    """One reason per cameo that nothing covers; empty when the rule holds."""


def coverage(
    video: Video,
    cameos: Mapping[str, Cameo],
    now: datetime,
    is_mutual: Callable[[str, str], bool],
    inherited: Collection[str] = (),
) -> Coverage:
    """Which grant covers each of the video's likenesses now, and why any is not covered.

    The rule the product exists for: a video with cameos is live only while, for every cameo in it, its
    creator is the cameo's owner or is reached by a live grant of the owner for the purpose it uses it for
    (`purpose_of`: `inherited` are the cameos of the video it remixes), as the grant's audience, scope, expiry
    and approved list, and the follow graph, are now.
    """
    granted: dict[str, str] = {}
    reasons: list[str] = []
    for used in video.cameos:
        cameo = cameos[used.cameo_id]
        asking = _asking(is_mutual, cameo.owner_id, video.creator_id)
        try:
            purpose = purpose_of(used.cameo_id, inherited)
            granted[used.cameo_id] = covering_grant(cameo, video.creator_id, purpose, now, asking)
        except ConsentError as refused:
            reasons.append(str(refused))
    return Coverage(granted, reasons)


def uncovered_cameos(
    video: Video,
    cameos: Mapping[str, Cameo],
    now: datetime,
    is_mutual: Callable[[str, str], bool],
    inherited: Collection[str] = (),
) -> list[str]:
    """Why the video's likenesses are not all under live consent now: one reason per uncovered cameo."""
    return coverage(video, cameos, now, is_mutual, inherited).reasons


def _asking(is_mutual: Callable[[str, str], bool], owner: str, person: str) -> Callable[[], bool]:
    return lambda: is_mutual(owner, person)
