"""Cameos: a person's registered likeness, the consent they grant for it, and every video that used it.

The cameo stream records each use (`CameoUseRecorded`, written in the same transaction as the video's
request), so a revocation reaches every video that used the likeness from the write side itself, without
waiting for a read model to catch up.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from kernel.errors import InvalidInput, NotFound, NotPermitted, RuleViolation
from provenance.domain.consent import Grant
from provenance.domain.payloads import payload as build
from provenance.domain.stream import EventStream
from schemas import events as e


@dataclass(frozen=True)
class CameoUse:
    video_id: str
    creator_id: str
    grant_id: str


class Cameo(EventStream):
    STREAM_TYPE = "cameo"

    def __init__(self) -> None:
        super().__init__()
        self.owner_id = ""
        self.reference_media_sha256 = ""
        self.encrypted_reference = ""
        self.key_id = ""
        self.erased = False
        self.erasure_event_id: str | None = None
        self.held: str | None = None
        """Why the cameo is held for trust and safety (it looks like another person's), until it is cleared."""
        self.rejected = False
        self.standing_event_id: str | None = None
        """The hold or review that last changed whether the cameo may cover anyone."""
        self.grants: dict[str, Grant] = {}
        self.uses: list[CameoUse] = []

    @classmethod
    def register(
        cls,
        cameo_id: UUID,
        owner_id: UUID,
        reference_media_sha256: str,
        encrypted_reference: str,
        key_id: str,
        verification: e.Verification,
        *,
        command_id: str | None,
    ) -> Cameo:
        payload = e.CameoRegistered(
            owner_id=str(owner_id),
            reference_media_sha256=reference_media_sha256,
            encrypted_reference=encrypted_reference,
            key_id=key_id,
            verification=verification,
        )
        return cls._start(cameo_id, "CameoRegistered", payload, actor=str(owner_id), command_id=command_id)

    # --- commands ------------------------------------------------------------------------------------

    def grant(self, actor: str, grant: e.ConsentGranted, now: datetime, *, command_id: str | None) -> bool:
        self._require_owner(actor, "grant consent for")
        self._require_not_erased()
        if self.held is not None or self.rejected:
            raise RuleViolation(f"cameo {self.id} cannot grant consent: {self.held or 'trust and safety rejected it'}")
        if grant.expires_at is not None:
            _check_expiry(grant.expires_at, now)
        if grant.audience == "approved" and not grant.grantees:
            raise InvalidInput("audience 'approved' needs at least one grantee")
        if grant.audience != "approved" and grant.grantees:
            raise InvalidInput(f"grantees are only given for audience 'approved', not {grant.audience!r}")
        if not grant.scope:
            raise InvalidInput("a grant needs a scope: generate, remix or both")
        if grant.grant_id in self.grants and not self.handled(command_id or ""):
            raise RuleViolation(f"grant {grant.grant_id} already exists on cameo {self.id}")
        return self._record("ConsentGranted", grant, actor=actor, command_id=command_id)

    def revoke(
        self, actor: str, grant_id: str, reason: str, *, is_trust_and_safety: bool, command_id: str | None
    ) -> bool:
        if actor != self.owner_id and not is_trust_and_safety:
            raise NotPermitted(f"only the owner of cameo {self.id} or trust and safety can revoke its consent")
        grant = self.grants.get(grant_id)
        if grant is None:
            raise NotFound(f"cameo {self.id} has no grant {grant_id}")
        payload = build(e.ConsentRevoked, grant_id=grant_id, reason=reason)
        if grant.revoked_at is not None:
            if command_id is not None and self.already_handled(
                command_id, "ConsentRevoked", payload.model_dump(mode="json")
            ):
                return False
            raise RuleViolation(f"grant {grant_id} on cameo {self.id} was already revoked")
        return self._record("ConsentRevoked", payload, actor=actor, command_id=command_id)

    @property
    def is_active(self) -> bool:
        """Usable at all: not erased, not held for review, not rejected."""
        return not self.erased and self.held is None and not self.rejected

    def hold(self, matched_cameo_id: str, similarity: float, *, command_id: str | None) -> bool:
        reason = f"the likeness matches cameo {matched_cameo_id} of another person (similarity {similarity:.3f})"
        payload = build(e.CameoHeld, matched_cameo_id=matched_cameo_id, similarity=similarity, reason=reason)
        return self._record("CameoHeld", payload, actor="system:verification", command_id=command_id)

    def review(self, actor: str, decision: str, statement: str, *, command_id: str | None) -> bool:
        payload = build(e.CameoReviewed, decision=decision, statement=statement)
        if command_id is not None and self.already_handled(command_id, "CameoReviewed", payload.model_dump()):
            return False
        if self.held is None:
            raise RuleViolation(f"cameo {self.id} is not held for review")
        return self._record("CameoReviewed", payload, actor=actor, command_id=command_id)

    def remove_grantee(self, actor: str, grant_id: str, person_id: str, *, command_id: str | None) -> bool:
        """Take a person off a grant's approved list (the owner only); a no-op when they are not on it."""
        self._require_owner(actor, "change the approved list of")
        grant = self.grants.get(grant_id)
        if grant is None:
            raise NotFound(f"cameo {self.id} has no grant {grant_id}")
        if grant.audience != "approved":
            raise InvalidInput(f"grant {grant_id} is for {grant.audience!r}, not an approved list")
        if person_id not in grant.grantees:
            return False
        payload = build(e.GranteeRemoved, grant_id=grant_id, person_id=person_id)
        return self._record("GranteeRemoved", payload, actor=actor, command_id=command_id)

    def record_expiry(self, grant_id: str, now: datetime, *, command_id: str | None) -> bool:
        """Record that a grant's expiry time has passed (once; a no-op before the time or after a revocation)."""
        grant = self.grants.get(grant_id)
        if grant is None:
            raise NotFound(f"cameo {self.id} has no grant {grant_id}")
        if grant.expires_at is None or now < grant.expires_at or grant.expiry_event_id or grant.revoked_at:
            return False
        payload = e.ConsentExpired(grant_id=grant_id, expired_at=grant.expires_at)
        return self._record("ConsentExpired", payload, actor="system:expiry", command_id=command_id)

    def record_use(self, video_id: UUID, creator_id: str, grant_id: str, *, command_id: str | None) -> bool:
        payload = e.CameoUseRecorded(video_id=str(video_id), creator_id=creator_id, grant_id=grant_id)
        return self._record("CameoUseRecorded", payload, actor=creator_id, command_id=command_id)

    def record_reinstated_use(self, video_id: UUID, case_id: str, actor: str, *, command_id: str | None) -> bool:
        """A video with this cameo is live again (see `CameoUseReinstated`)."""
        payload = e.CameoUseReinstated(video_id=str(video_id), case_id=case_id)
        return self._record("CameoUseReinstated", payload, actor=actor, command_id=command_id)

    def erase(self, actor: str, reason: str, *, command_id: str | None) -> bool:
        self._require_owner(actor, "erase")
        payload = build(e.CameoErased, key_id=self.key_id, reason=reason)
        if self.erased:  # recorded once; the owner may run it again to finish a clean-up a crash interrupted
            if command_id is not None:
                self.already_handled(command_id, "CameoErased", payload.model_dump())  # another command's id: refused
            return False
        return self._record("CameoErased", payload, actor=actor, command_id=command_id)

    # --- queries -------------------------------------------------------------------------------------

    def uses_under(self, grant_id: str) -> list[CameoUse]:
        return [use for use in self.uses if use.grant_id == grant_id]

    def _require_owner(self, actor: str, what: str) -> None:
        if actor != self.owner_id:
            raise NotPermitted(f"only the owner of cameo {self.id} can {what} it")

    def _require_not_erased(self) -> None:
        if self.erased:
            raise RuleViolation(f"cameo {self.id} was erased")

    # --- event handlers ------------------------------------------------------------------------------

    def _when_CameoRegistered(self, p: dict[str, Any], _: Any) -> None:
        self.owner_id = p["owner_id"]
        self.reference_media_sha256 = p["reference_media_sha256"]
        self.encrypted_reference = p["encrypted_reference"]
        self.key_id = p["key_id"]

    def _when_ConsentGranted(self, p: dict[str, Any], event: Any) -> None:
        expires = p.get("expires_at")
        self.grants[p["grant_id"]] = Grant(
            grant_id=p["grant_id"],
            audience=p["audience"],
            grantees=frozenset(p["grantees"]),
            scope=frozenset(p["scope"]),
            expires_at=datetime.fromisoformat(expires) if expires else None,
            granted_at=event.timestamp,
        )

    def _when_ConsentRevoked(self, p: dict[str, Any], event: Any) -> None:
        grant = self.grants[p["grant_id"]]
        grant.revoked_at = event.timestamp
        grant.revoke_reason = p["reason"]
        grant.revocation_event_id = event.event_id

    def _when_GranteeRemoved(self, p: dict[str, Any], event: Any) -> None:
        grant = self.grants[p["grant_id"]]
        grant.grantees = grant.grantees - {p["person_id"]}
        grant.narrowing_event_id = event.event_id

    def _when_ConsentExpired(self, p: dict[str, Any], event: Any) -> None:
        self.grants[p["grant_id"]].expiry_event_id = event.event_id

    def _when_CameoHeld(self, p: dict[str, Any], event: Any) -> None:
        self.held = p["reason"]
        self.standing_event_id = event.event_id

    def _when_CameoReviewed(self, p: dict[str, Any], event: Any) -> None:
        self.held = None
        self.rejected = p["decision"] == "rejected"
        self.standing_event_id = event.event_id

    def _when_CameoUseRecorded(self, p: dict[str, Any], _: Any) -> None:
        self.uses.append(CameoUse(p["video_id"], p["creator_id"], p["grant_id"]))

    def _when_CameoUseReinstated(self, p: dict[str, Any], _: Any) -> None:
        pass  # the use was recorded when the video was requested

    def _when_CameoErased(self, p: dict[str, Any], event: Any) -> None:
        self.erased = True
        self.erasure_event_id = event.event_id


MAX_GRANT_YEARS = 100


def _check_expiry(expires_at: datetime, now: datetime) -> None:
    """An expiry in the future that every store and read model can hold (at most 100 years ahead, in UTC)."""
    try:
        in_utc = expires_at.astimezone(UTC)
    except OverflowError:
        raise InvalidInput(f"the expiry {expires_at.isoformat()} is out of range") from None
    if in_utc <= now:
        raise InvalidInput(f"the expiry {expires_at.isoformat()} is in the past")
    if in_utc > now + timedelta(days=365 * MAX_GRANT_YEARS):
        raise InvalidInput(f"the expiry {expires_at.isoformat()} is more than {MAX_GRANT_YEARS} years away")
