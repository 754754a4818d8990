"""Commands on cameos: registration, consent grants and revocations (with the takedown cascade), erasure."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from uuid import UUID

from kernel.blobstore import sha256_from_uri
from kernel.errors import CommandConflict, ConsentError, NotPermitted
from provenance.application.coverage import CoverageCommands, Withdrawal, WithdrawalOutcome
from provenance.application.likeness import open_reference, reference_blob, seal_reference
from provenance.application.service import uuid_of
from provenance.domain.cameo import Cameo
from provenance.domain.cascade import TakedownRecord
from provenance.domain.ids import canonical_id, derived_id, new_command_id
from provenance.domain.payloads import on_record, payload
from provenance.domain.video import Video
from provenance.keystore import KeyDestroyed, KeyMissing
from schemas import events as e


@dataclass(frozen=True)
class RevocationOutcome:
    grant_id: str
    takedowns: list[TakedownRecord]
    blocked: list[str]


class CameoCommands(CoverageCommands):
    def register_cameo(self, owner: UUID, reference_image: bytes, *, command_id: str | None = None) -> UUID:
        """Register a likeness; the reference image is stored encrypted under a key of its own."""
        command_id = command_id or new_command_id()
        self.reference_check.check(reference_image)
        cameo_id = UUID(derived_id("cameo", command_id))
        sha256 = hashlib.sha256(reference_image).hexdigest()

        def run() -> UUID:
            self.person(owner)
            if self.exists(cameo_id):
                earlier = self.cameo(cameo_id)
                if earlier.owner_id != str(owner) or earlier.reference_media_sha256 != sha256:
                    raise CommandConflict(f"command id {command_id} was already used for a different command")
                return cameo_id
            self._check_key_store()
            key_id, sealed = seal_reference(self.keystore, self.blobs, cameo_id, reference_image)
            cameo = Cameo.register(
                cameo_id,
                owner,
                sha256,
                sealed,
                key_id,
                e.Verification(method="self-attested", status="unverified"),
                command_id=command_id,
            )
            self.save(cameo)
            return cameo_id

        return self._retrying(run)

    def _check_key_store(self) -> None:
        """Refuse a key store that has never held a key beside a log that holds cameos: it is not the store their
        keys were made in (moved away, or `PROVENANCE_KEYS_URL` pointing elsewhere). A key made there would be lost
        when the right store comes back; nothing is recorded."""
        from eventsourcing.utils import get_topic

        if self.keystore.has_held_keys():
            return
        if self.recorder.select_notifications(start=None, limit=1, topics=[get_topic(Cameo.Started)]):
            raise KeyMissing(
                "the key store holds none of the keys of the cameos registered (a lost or replaced key store, or "
                "PROVENANCE_KEYS_URL pointing at another): restore it from its backup or point PROVENANCE_KEYS_URL "
                "at it; nothing was recorded"
            )

    def hold_cameo(self, cameo_id: UUID | str, matched_cameo_id: str, similarity: float) -> bool:
        """Hold a cameo whose likeness matches another person's: it grants nothing, and no video of the real
        owner is blocked by it, until trust and safety decides (`review_cameo`). A video already made with it
        (its owner's own too) comes down, or is blocked in flight, as when consent ends."""
        command_id = f"hold:{uuid_of(cameo_id, 'cameo')}"
        because = f"Cameo {{cameo}} was held for review: it looks like another person's cameo {matched_cameo_id}."
        return self._change_standing(
            cameo_id,
            lambda c: c.hold(matched_cameo_id, similarity, command_id=command_id),
            Withdrawal("system:verification", command_id, "cameo_held", "consent_revocation", None, because),
        )

    def review_cameo(
        self, cameo_id: UUID | str, actor: UUID | str, decision: str, statement: str, *, command_id: str | None = None
    ) -> bool:
        """Trust and safety clears a held cameo (it becomes active) or rejects it (it never will)."""
        command_id = command_id or new_command_id()
        on_record(statement, "a review's statement")
        if not self.is_trust_and_safety(actor):
            raise NotPermitted("only trust and safety can review a held cameo")
        because = f"Cameo {{cameo}} was rejected by trust and safety: {statement}"
        return self._change_standing(
            cameo_id,
            lambda c: c.review(str(actor), decision, statement, command_id=command_id),
            Withdrawal(str(actor), command_id, "cameo_rejected", "consent_revocation", None, because),
        )

    def _change_standing(self, cameo_id: UUID | str, change: Callable[[Cameo], bool], withdrawal: Withdrawal) -> bool:
        """Hold or review a cameo; when that leaves it covering no one, every video that uses it (its owner's
        included: the likeness may not be theirs) is taken down or blocked in the same transaction."""

        def run() -> bool:
            cameo = self._writing(lambda: self.cameo(cameo_id))
            if not change(cameo):
                return False
            if cameo.is_active:  # cleared: it covers again, and what came down stays down until reinstated
                self.save(cameo)
                return True
            cause = e.EventRef(event_id=cameo.standing_event_id or "", stream_id=str(cameo.id))
            because = withdrawal.because.format(cameo=cameo.id)
            ending = replace(withdrawal, cause=cause, because=because)
            self._withdraw_uncovered(cameo, ending, [use.video_id for use in cameo.uses])
            return True

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
        # Of this cameo too: one command id (an idempotency key a client reuses) never names two cameos' grants.
        grant_id = derived_id("grant", command_id, uuid_of(cameo_id, "cameo"))
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

        Every video that used the cameo is held against the consent rule again (not only those made under
        this grant: another grant may have been what covered them): each published one that no grant covers
        any more gets a takedown pointing at the revocation, every remix below it one pointing at its parent's
        takedown, and videos still in flight are blocked at the consent gate.
        """
        command_id = command_id or new_command_id()
        grant_id = canonical_id(grant_id)
        on_record(reason, "a revocation's reason", 2000)

        def run() -> RevocationOutcome:
            cameo = self.cameo(cameo_id)
            actor_ts = self.is_trust_and_safety(actor)
            if not cameo.revoke(str(actor), grant_id, reason, is_trust_and_safety=actor_ts, command_id=command_id):
                return RevocationOutcome(grant_id, [], [])
            cause = e.EventRef(event_id=cameo.grants[grant_id].revocation_event_id or "", stream_id=str(cameo.id))
            because = f"Consent for cameo {cameo.id} was revoked by {actor}: {reason}."
            withdrawal = Withdrawal(str(actor), command_id, "consent_revoked", "consent_revocation", cause, because)
            outcome = self._withdraw_uncovered(cameo, withdrawal)
            return RevocationOutcome(grant_id, outcome.takedowns, outcome.blocked)

        return self._retrying(run)

    def remove_grantee(
        self,
        actor: UUID | str,
        cameo_id: UUID | str,
        grant_id: str,
        person: UUID | str,
        *,
        command_id: str | None = None,
    ) -> RevocationOutcome:
        """Take a person off an approved list; what they made that no grant covers any more comes down with it."""
        command_id = command_id or new_command_id()
        grant_id = canonical_id(grant_id)

        def run() -> RevocationOutcome:
            cameo = self.cameo(cameo_id)
            if not cameo.remove_grantee(str(actor), grant_id, str(person), command_id=command_id):
                return RevocationOutcome(grant_id, [], [])
            cause = e.EventRef(event_id=cameo.grants[grant_id].narrowing_event_id or "", stream_id=str(cameo.id))
            because = f"Person {person} was taken off the approved list of consent {grant_id} for cameo {cameo.id}."
            withdrawal = Withdrawal(str(actor), command_id, "consent_narrowed", "consent_revocation", cause, because)
            theirs = [use.video_id for use in cameo.uses if use.creator_id == str(person)]
            outcome = self._withdraw_uncovered(cameo, withdrawal, theirs)
            return RevocationOutcome(grant_id, outcome.takedowns, outcome.blocked)

        return self._retrying(run)

    def expire_consent(
        self, cameo_id: UUID | str, grant_id: str, *, command_id: str | None = None
    ) -> RevocationOutcome:
        """Record that a grant expired (the expiry timer calls this) and take down what it alone covered."""
        command_id = command_id or f"expire:{grant_id}"

        def run() -> RevocationOutcome:
            cameo = self.cameo(cameo_id)
            if not cameo.record_expiry(grant_id, self.clock(), command_id=command_id):
                return RevocationOutcome(grant_id, [], [])
            grant = cameo.grants[grant_id]
            cause = e.EventRef(event_id=grant.expiry_event_id or "", stream_id=str(cameo.id))
            assert grant.expires_at is not None
            because = f"Consent {grant_id} for cameo {cameo.id} expired at {grant.expires_at.isoformat()}."
            withdrawal = Withdrawal("system:expiry", command_id, "consent_expired", "consent_expiry", cause, because)
            outcome = self._withdraw_uncovered(cameo, withdrawal)
            return RevocationOutcome(grant_id, outcome.takedowns, outcome.blocked)

        return self._retrying(run)

    def recheck_consent(
        self, cameo_id: UUID | str, *, because: str, cause: e.EventRef | None, command_id: str
    ) -> RevocationOutcome:
        """Hold every video with the cameo against the consent rule after something outside the cameo changed
        (an unfollow that ends a mutual): what no grant covers any more comes down, naming the cause."""

        def run() -> RevocationOutcome:
            cameo = self.cameo(cameo_id)
            withdrawal = Withdrawal("system:consent", command_id, "consent_lost", "consent_revocation", cause, because)
            outcome = self._withdraw_uncovered(cameo, withdrawal)
            return RevocationOutcome("", outcome.takedowns, outcome.blocked)

        return self._retrying(run)

    def erase_cameo(
        self, actor: UUID, cameo_id: UUID | str, reason: str, *, command_id: str | None = None
    ) -> RevocationOutcome:
        """Erase a likeness: every video with it comes down (each with a case), then its data is destroyed.

        The erasure and the takedowns are recorded in one transaction; then the encrypted reference blob is
        deleted and the key destroyed (crypto-shredding: any copy of the ciphertext is unreadable). Running the
        command again finishes a clean-up that a crash interrupted.
        """
        command_id = command_id or new_command_id()
        on_record(reason, "an erasure's reason", 2000)

        def run() -> RevocationOutcome:
            cameo = self.cameo(cameo_id)
            blob = self._reference_blob(cameo)
            outcome = WithdrawalOutcome([], [])
            if cameo.erase(str(actor), reason, command_id=command_id):
                cause = e.EventRef(event_id=cameo.erasure_event_id or "", stream_id=str(cameo.id))
                because = f"Cameo {cameo.id} was erased by its owner: {reason}."
                withdrawal = Withdrawal(str(actor), command_id, "cameo_erased", "consent_revocation", cause, because)
                outcome = self._withdraw_uncovered(cameo, withdrawal)
            if blob is not None:
                self.blobs.delete(blob)
            self.keystore.destroy(cameo.key_id)
            for use in cameo.uses:
                self._destroy_files(self.video(use.video_id))
            return RevocationOutcome("", outcome.takedowns, outcome.blocked)

        return self._retrying(run)

    def _destroy_files(self, video: Video) -> None:
        """Delete the files that show a video's pictures, an erased likeness among them: its render, its signed
        file and the name the command line gave it. The record of them (hashes, manifest) stays."""
        for uri in _files_of(video):
            self.blobs.delete(sha256_from_uri(uri))
        if self.exported_videos is not None:
            (self.exported_videos / f"{video.id}.mp4").unlink(missing_ok=True)

    def discard_dropped_output(self, video_id: UUID | str, uri: str) -> None:
        """A stage's file whose result was dropped (the video moved on while the stage ran: a consent ended, the
        likeness was erased) is deleted if it shows a likeness: nothing records it, so no later erasure could
        find it. Kept when another video with the same likeness holds the same file (a render of the same
        request and seed), which only a video using the same cameos can."""
        video = self.video(video_id)
        if not video.cameo_ids:
            return
        others = [self.video(u.video_id) for u in self.cameo(video.cameo_ids[0]).uses if u.video_id != str(video.id)]
        if not any(uri in _files_of(other) for other in others):
            self.blobs.delete(sha256_from_uri(uri))

    def _reference_blob(self, cameo: Cameo) -> str | None:
        """The sha256 of the encrypted reference image, while the key that names it still exists.

        A key the store does not hold is a setup failure (`KeyMissing`: a lost key store), unless the cameo's
        erasure is already on record: a key store written before tombstones deleted destroyed keys outright."""
        try:
            return reference_blob(self.keystore, cameo.id, cameo.key_id, cameo.encrypted_reference)
        except KeyDestroyed:
            return None
        except KeyMissing:
            if cameo.erased:
                return None
            raise

    def videos_with_cameo(self, actor: UUID | str, cameo_id: UUID | str) -> list[Video]:
        """Every video that uses the cameo: its owner (and trust and safety) can see all of them."""
        cameo = self.cameo(cameo_id)
        if str(actor) != cameo.owner_id and not self.is_trust_and_safety(actor):
            raise NotPermitted(f"only the owner of cameo {cameo.id} can list the videos that use it")
        return [self.video(use.video_id) for use in cameo.uses]


def _files_of(video: Video) -> list[str]:
    """The blob URIs of the files that show a video's pictures: its render and its signed file."""
    files = (video.rendered and video.rendered.blob_uri, video.signature and video.signature.signed_uri)
    return [uri for uri in files if uri]
