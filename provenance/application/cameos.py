"""Commands on cameos: registration, consent grants and revocations (with the takedown cascade), erasure."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from kernel.errors import ConsentError, InvalidInput, NotPermitted
from provenance.application.likeness import open_reference, seal_reference
from provenance.application.service import Service
from provenance.domain.cameo import Cameo
from provenance.domain.cascade import Takedown, TakedownRecord, take_down_tree
from provenance.domain.consent import purpose_of
from provenance.domain.ids import derived_id, new_command_id
from provenance.domain.payloads import payload
from provenance.domain.video import IN_FLIGHT, Video
from schemas import events as e


@dataclass(frozen=True)
class RevocationOutcome:
    grant_id: str
    takedowns: list[TakedownRecord]
    blocked: list[str]


class CameoCommands(Service):
    def register_cameo(self, owner: UUID, reference_image: bytes, *, command_id: str | None = None) -> UUID:
        """Register a likeness; the reference image is stored encrypted under a key of its own."""
        command_id = command_id or new_command_id()
        if not reference_image:
            raise InvalidInput("the reference image is empty")
        cameo_id = derived_id("cameo", command_id)

        def run() -> UUID:
            self.person(owner)
            if self.exists(cameo_id):
                return cameo_id
            key_id, sealed = seal_reference(self.keystore, self.blobs, cameo_id, reference_image)
            cameo = Cameo.register(
                cameo_id,
                owner,
                hashlib.sha256(reference_image).hexdigest(),
                sealed,
                key_id,
                e.Verification(method="self-attested", status="unverified"),
                command_id=command_id,
            )
            self.save(cameo)
            return cameo_id

        return self._retrying(run)

    def cameo_reference(self, cameo_id: UUID | str) -> bytes:
        """The decrypted reference image of a cameo (for the renderer and the likeness classifier)."""
        cameo = self.cameo(cameo_id)
        if cameo.erased:
            raise ConsentError(f"cameo {cameo.id} was erased by its owner")
        return open_reference(self.keystore, self.blobs, cameo.id, cameo.key_id, cameo.encrypted_reference)

    def grant_consent(
        self,
        actor: UUID,
        cameo_id: UUID | str,
        audience: str,
        *,
        grantees: Iterable[UUID] = (),
        scope: Iterable[str] = ("generate", "remix"),
        expires_at: datetime | None = None,
        command_id: str | None = None,
    ) -> str:
        command_id = command_id or new_command_id()
        grant_id = str(derived_id("grant", command_id))
        grantee_ids = [str(g) for g in grantees]
        grant = payload(
            e.ConsentGranted,
            grant_id=grant_id,
            audience=audience,
            grantees=grantee_ids,
            scope=sorted(set(scope)),
            expires_at=expires_at,
        )

        def run() -> str:
            cameo = self.cameo(cameo_id)
            for grantee in grantee_ids:
                self.person(grantee)
            if cameo.grant(str(actor), grant, self.clock(), command_id=command_id):
                self.save(cameo)
            return grant_id

        return self._retrying(run)

    def revoke_consent(
        self, actor: UUID | str, cameo_id: UUID | str, grant_id: str, reason: str, *, command_id: str | None = None
    ) -> RevocationOutcome:
        """Revoke a grant and take down, in the same transaction, every video that loses its consent.

        Each published video whose creator has no other live grant covering it gets a takedown pointing at
        the revocation, and every remix below it one pointing at its parent's takedown; videos still in
        flight are blocked at the consent gate.
        """
        command_id = command_id or new_command_id()

        def run() -> RevocationOutcome:
            cameo = self.cameo(cameo_id)
            actor_ts = self.is_trust_and_safety(actor)
            if not cameo.revoke(str(actor), grant_id, reason, is_trust_and_safety=actor_ts, command_id=command_id):
                return RevocationOutcome(grant_id, [], [])
            grant = cameo.grants[grant_id]
            cause = e.EventRef(event_id=grant.revocation_event_id or "", stream_id=str(cameo.id))
            now = self.clock()
            changed: dict[UUID, Video] = {}
            takedowns: list[TakedownRecord] = []
            blocked: list[str] = []
            uses = list(cameo.uses_under(grant_id))
            self._prefetch_videos_and_remixes(use.video_id for use in uses)
            # The cameo and the clock stand still during the command: one answer per creator and purpose.
            answers: dict[tuple[str, str], ConsentError | None] = {}
            for use in uses:
                video = self.video(use.video_id)
                asked = (use.creator_id, purpose_of(video))
                if asked not in answers:
                    try:
                        self.consent(cameo, use.creator_id, asked[1], now)
                        answers[asked] = None
                    except ConsentError as refused:
                        answers[asked] = refused
                why = answers[asked]
                if why is None:
                    continue  # still covered by another live grant
                statement = f"Consent for cameo {cameo.id} was revoked by {actor}: {reason}. {why}"
                if video.state in IN_FLIGHT:
                    blocked_event = payload(e.VideoBlocked, gate="consent", reasons=[statement])
                    if video.block(blocked_event, str(actor), command_id=command_id):
                        changed[video.id] = video
                        blocked.append(str(video.id))
                elif video.is_live:
                    takedown = Takedown(
                        actor=str(actor),
                        command_id=command_id,
                        reason_code="consent_revoked",
                        statement=statement,
                        source="consent_revocation",
                        automated=True,
                        caused_by=cause,
                        policy_clause="likeness-consent",
                        legal_ground=None,
                    )
                    takedowns += take_down_tree(video, takedown, self.video, changed)
            self.save(cameo, *changed.values())
            return RevocationOutcome(grant_id, takedowns, blocked)

        return self._retrying(run)

    def erase_cameo(self, actor: UUID, cameo_id: UUID | str, reason: str, *, command_id: str | None = None) -> None:
        """Crypto-shred the likeness: destroy its key and its encrypted blob, and record that it was done."""
        command_id = command_id or new_command_id()

        def run() -> None:
            cameo = self.cameo(cameo_id)
            if cameo.erase(str(actor), reason, command_id=command_id):
                self.keystore.destroy(cameo.key_id)
                self.save(cameo)

        self._retrying(run)

    def videos_with_cameo(self, actor: UUID | str, cameo_id: UUID | str) -> list[Video]:
        """Every video that uses the cameo: its owner (and trust and safety) can see all of them."""
        cameo = self.cameo(cameo_id)
        if str(actor) != cameo.owner_id and not self.is_trust_and_safety(actor):
            raise NotPermitted(f"only the owner of cameo {cameo.id} can list the videos that use it")
        return [self.video(use.video_id) for use in cameo.uses]
