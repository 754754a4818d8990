"""Commands on takedowns: taking a video down (with its remixes), appeals, and reinstatement."""

from __future__ import annotations

from uuid import UUID

from kernel.errors import ConsentError, InvalidInput, NotPermitted, RuleViolation
from provenance.application.coverage import CoverageCommands, Withdrawal, WithdrawalOutcome
from provenance.domain.cascade import Takedown, TakedownRecord, take_down_tree
from provenance.domain.ids import canonical_id, new_command_id
from provenance.domain.payloads import on_record, payload
from provenance.domain.stream import EventStream
from provenance.domain.video import Video
from schemas import events as e


class TakedownCommands(CoverageCommands):
    def take_down(
        self,
        video_id: UUID | str,
        actor: UUID | str,
        *,
        reason_code: str,
        statement_of_reasons: str,
        policy_clause: str | None = None,
        legal_ground: str | None = None,
        source: str | None = None,
        command_id: str | None = None,
    ) -> list[TakedownRecord]:
        """Take a published video down, and every remix below it, each with its own case on record.

        Trust and safety may take down anything (source `notice` or `own_initiative`); the owner of a cameo
        in the video may take that video down (source `cameo_owner`).
        """
        command_id = command_id or new_command_id()
        on_record(reason_code, "a takedown's reason code", 100)
        on_record(statement_of_reasons, "a takedown's statement of reasons")

        def run() -> list[TakedownRecord]:
            video = self.video(video_id)
            if self.is_trust_and_safety(actor):
                chosen = source or "own_initiative"
                if chosen not in ("notice", "own_initiative"):
                    raise InvalidInput(f"source must be notice or own_initiative, not {chosen!r}")
            elif any(self.cameo(c).owner_id == str(actor) for c in video.cameo_ids):
                chosen = "cameo_owner"
            else:
                raise NotPermitted(
                    f"only trust and safety or the owner of a cameo in video {video.id} can take it down"
                )
            # A retry is answered after the check (a key says nothing about who may act) with what it recorded.
            if not video.is_live and not video.handled(command_id):
                raise RuleViolation(
                    f"video {video.id} is not live (it is {video.state}{', taken down' if video.is_taken_down else ''})"
                )
            takedown = Takedown(
                actor=str(actor),
                command_id=command_id,
                reason_code=reason_code,
                statement=statement_of_reasons,
                source=chosen,
                automated=False,
                caused_by=None,
                policy_clause=policy_clause,
                legal_ground=legal_ground,
            )
            changed: dict[UUID, Video] = {}
            records = take_down_tree(video, takedown, self.video, changed)
            if changed:
                self.save(*changed.values())
            return records

        return self._retrying(run)

    def appeal(
        self, video_id: UUID | str, case_id: str, actor: UUID | str, grounds: str, *, command_id: str | None = None
    ) -> None:
        command_id = command_id or new_command_id()
        appeal = payload(
            e.TakedownAppealed, case_id=canonical_id(case_id), grounds=on_record(grounds, "an appeal's grounds")
        )
        self._on_video(video_id, lambda v: v.appeal(appeal, str(actor), command_id=command_id))

    def reinstate(
        self, video_id: UUID | str, case_id: str, actor: UUID | str, decision: str, *, command_id: str | None = None
    ) -> None:
        """Close a takedown case in the video's favour (trust and safety only).

        Refused, whatever the case's source, while the consent rule would not let the video be live: every
        cameo in it under live consent and the video it remixes live.

        The check reads the cameos and the parent, while what ends the rule (a revocation, an erasure, a hold,
        an expiry, a takedown of the parent) writes them and leaves a video that is down alone: two processes
        could each decide from what the other had not yet recorded, and the video would go back up without
        consent. So a reinstatement that puts the video back up also records, in the same transaction, that it
        did on each cameo (`CameoUseReinstated`) and on the parent (`RemixReinstated`), at the versions the
        check read (loaded before it, never again after): whichever of the two commands saves second conflicts
        on a version and runs again on what the first recorded, which refuses the reinstatement or takes the
        video down. The event store's own version check does it, so it holds on SQLite and PostgreSQL alike,
        as a request's `CameoUseRecorded` and `RemixRecorded` do for a revocation that races it.
        """
        command_id = command_id or new_command_id()
        if not self.is_trust_and_safety(actor):
            raise NotPermitted("only trust and safety can reinstate a video")
        decision = on_record(decision, "a reinstatement's decision")
        reinstated = payload(e.VideoReinstated, case_id=canonical_id(case_id), decision=decision)

        def run() -> None:
            video = self._writing(lambda: self.video(video_id))
            if video.handled(command_id):  # a repeat records nothing (a reused command id is refused)
                video.reinstate(reinstated, str(actor), command_id=command_id)
                return
            cameos = [self.cameo(cameo_id) for cameo_id in dict.fromkeys(video.cameo_ids)]
            parent = self.video(video.remix_of) if video.remix_of is not None else None
            reasons = self.why_not_live(video, self.clock())
            if reasons:
                raise ConsentError(f"video {video.id} cannot be reinstated: {'; '.join(reasons)}")
            if not video.reinstate(reinstated, str(actor), command_id=command_id):
                return
            touched: list[EventStream] = [video]
            if video.is_live:
                for cameo in cameos:
                    cameo.record_reinstated_use(video.id, reinstated.case_id, str(actor), command_id=command_id)
                touched += cameos
                if parent is not None:
                    parent.record_remix_reinstated(video.id, reinstated.case_id, str(actor), command_id=command_id)
                    touched.append(parent)
            self.save(*touched)

        self._retrying(run)
        self._recheck_reinstated(video_id, command_id)

    def _recheck_reinstated(self, video_id: UUID | str, command_id: str) -> None:
        """Hold a reinstated video to the rule once more, after the reinstatement committed.

        An unfollow that ends a mutual records nothing on the cameos, so it cannot conflict with a reinstatement
        that checked the pair were mutuals: the consent watch re-checks after the unfollow, and this re-checks
        after the reinstatement, so whichever of the two runs last sees both, and what no grant covers comes down.
        """
        video = self.video(video_id)
        if not video.is_live or not video.cameo_ids:
            return
        because = f"Consent no longer covered video {video.id} when it was checked again, once it was reinstated."
        recheck_id = f"{command_id}:recheck"
        ending = Withdrawal("system:consent", recheck_id, "consent_lost", "consent_revocation", None, because)

        def recheck() -> WithdrawalOutcome:  # the whole video is held to the rule: its case names what failed
            return self._withdraw_uncovered(self.cameo(video.cameo_ids[0]), ending, [str(video.id)])

        self._retrying(recheck)
