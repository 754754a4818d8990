"""Holding the consent rule: every video that loses the consent of a likeness in it comes down.

Whatever ends coverage (a revocation of any grant, an expiry, an erasure, an unfollow that ends a mutual, a hold
or rejection of the cameo) the videos that used the cameo are re-evaluated against
`provenance.domain.consent.uncovered_cameos`, the rule in one place; each published one that no longer passes is
taken down with its own case naming the cause (and its remixes with cascade cases), and each still in flight is
blocked at the consent gate.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from uuid import UUID

from provenance.application.service import Service
from provenance.domain.cameo import Cameo
from provenance.domain.cascade import Takedown, TakedownRecord, take_down_tree
from provenance.domain.consent import purpose_of, uncovered_cameos
from provenance.domain.payloads import payload
from provenance.domain.video import IN_FLIGHT, Video
from schemas import events as e


@dataclass(frozen=True)
class Withdrawal:
    """Why videos lose their consent, as their takedown cases and blocks will say it."""

    actor: str
    command_id: str
    reason_code: str
    source: str
    cause: e.EventRef | None
    because: str


@dataclass(frozen=True)
class WithdrawalOutcome:
    takedowns: list[TakedownRecord]
    blocked: list[str]


class CoverageCommands(Service):
    def _withdraw_uncovered(
        self, cameo: Cameo, withdrawal: Withdrawal, video_ids: Iterable[str] | None = None
    ) -> WithdrawalOutcome:
        """Take down (or block) each video with the cameo, and the remixes below them, that the rule no longer
        allows; then save the cameo (with whatever the command recorded on it) and every video changed, in one
        transaction.

        `video_ids` narrows the videos looked at (default: every use of the cameo that consent can affect).
        """
        if video_ids is None:
            video_ids = [use.video_id for use in cameo.uses if cameo.erased or use.creator_id != cameo.owner_id]
        ids = list(dict.fromkeys(video_ids))
        self._prefetch_videos_and_remixes(ids)
        now = self.clock()
        cameos: dict[str, Cameo] = {str(cameo.id): cameo}
        changed: dict[UUID, Video] = {}
        mutuals: dict[tuple[str, str], bool] = {}

        def is_mutual(owner: str, person: str) -> bool:
            if (owner, person) not in mutuals:
                mutuals[(owner, person)] = self.are_mutuals(owner, person)
            return mutuals[(owner, person)]

        # Cameos, follow graph and clock stand still during the command: one verdict per creator, purpose, cameos.
        verdicts: dict[tuple[str, tuple[tuple[str, str], ...]], list[str]] = {}
        takedowns: list[TakedownRecord] = []
        blocked: list[str] = []
        for video_uid in map(UUID, ids):
            video = changed.get(video_uid) or self.video(video_uid)
            if not video.is_live and video.state not in IN_FLIGHT:
                continue
            inherited = self.inherited_cameos(video)
            key = (video.creator_id, tuple((c, purpose_of(c, inherited)) for c in video.cameo_ids))
            if key not in verdicts:
                for cameo_id in video.cameo_ids:
                    if cameo_id not in cameos:
                        cameos[cameo_id] = self.cameo(cameo_id)
                verdicts[key] = uncovered_cameos(video, cameos, now, is_mutual, inherited)
            reasons = verdicts[key]
            if not reasons:
                continue
            statement = f"{withdrawal.because} {' '.join(reasons)}"[:5000]
            if video.state in IN_FLIGHT:
                blocked_event = payload(e.VideoBlocked, gate="consent", reasons=[statement])
                if video.block(blocked_event, withdrawal.actor, command_id=withdrawal.command_id):
                    changed[video.id] = video
                    blocked.append(str(video.id))
                continue
            takedown = Takedown(
                actor=withdrawal.actor,
                command_id=withdrawal.command_id,
                reason_code=withdrawal.reason_code,
                statement=statement,
                source=withdrawal.source,
                automated=True,
                caused_by=withdrawal.cause,
                policy_clause="likeness-consent",
                legal_ground=None,
            )
            takedowns += take_down_tree(video, takedown, self.video, changed)
        touched = [cameo, *changed.values()]
        if any(aggregate.pending_events for aggregate in touched):
            self.save(*touched)
        return WithdrawalOutcome(takedowns, blocked)
