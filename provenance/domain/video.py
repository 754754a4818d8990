"""A video's life: requested -> rendered -> moderated -> signed -> published, blockable at every gate.

The aggregate enforces the order of the gates and what each result may follow; rules that need other
aggregates (consent at request and publish time, the revocation cascade) live in the application service.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

from kernel.errors import InvalidTransition, NotFound, RuleViolation
from provenance.domain.payloads import TPayload
from provenance.domain.stream import EventStream
from schemas import events as e

REQUESTED = "requested"
RENDERED = "rendered"
RENDER_FAILED = "render_failed"
MODERATED = "moderated"
SIGNED = "signed"
PUBLISHED = "published"
BLOCKED = "blocked"

IN_FLIGHT = (REQUESTED, RENDERED, MODERATED, SIGNED)


@dataclass
class TakedownCase:
    case_id: str
    source: str
    reason_code: str
    statement_of_reasons: str
    event_id: str
    caused_by: dict[str, str] | None
    status: str = "open"  # open -> appealed -> reinstated


class Video(EventStream):
    STREAM_TYPE = "video"

    def __init__(self) -> None:
        super().__init__()
        self.state = REQUESTED
        self.creator_id = ""
        self.prompt = ""
        self.parameters: dict[str, Any] = {}
        self.seed = 0
        self.cameos: list[e.CameoInVideo] = []
        self.remix_of: str | None = None
        self.children: list[UUID] = []
        # Gate results, typed on first read: loading thousands of videos (a cascade) never pays for them.
        self._results: dict[str, dict[str, Any]] = {}
        self._typed: dict[str, e.Payload] = {}
        self.block_reasons: list[str] = []
        self.cases: dict[str, TakedownCase] = {}
        self.event_ids: list[str] = []

    @classmethod
    def request(cls, video_id: UUID, request: e.GenerationRequested, *, command_id: str | None) -> Video:
        return cls._start(video_id, "GenerationRequested", request, actor=request.creator_id, command_id=command_id)

    @property
    def is_taken_down(self) -> bool:
        return any(case.status != "reinstated" for case in self.cases.values())

    @property
    def is_live(self) -> bool:
        """Published and not under a takedown: what the feed shows."""
        return self.state == PUBLISHED and not self.is_taken_down

    @property
    def is_held_for_review(self) -> bool:
        """Stopped at the moderation gate for a person's decision (neither blocked nor released yet)."""
        return self.state == MODERATED and self.moderation is not None and self.moderation.verdict == "review"

    @property
    def rendered(self) -> e.VideoRendered | None:
        return self._result("VideoRendered", e.VideoRendered)

    @property
    def moderation(self) -> e.ModerationDecided | None:
        return self._result("ModerationDecided", e.ModerationDecided)

    @property
    def signature(self) -> e.VideoSigned | None:
        return self._result("VideoSigned", e.VideoSigned)

    def _keep(self, event_type: str, payload: dict[str, Any]) -> None:
        self._results[event_type] = payload
        self._typed.pop(event_type, None)

    def _result(self, event_type: str, model: type[TPayload]) -> TPayload | None:
        raw = self._results.get(event_type)
        if raw is None:
            return None
        typed = self._typed.get(event_type)
        if not isinstance(typed, model):
            typed = self._typed[event_type] = model.model_validate(raw)
        return typed

    @property
    def cameo_ids(self) -> list[str]:
        return [c.cameo_id for c in self.cameos]

    # --- gate results ------------------------------------------------------------------------------------

    def record_remix(self, child_id: UUID, creator_id: str, *, command_id: str | None) -> bool:
        if not self.is_live:
            raise RuleViolation(f"video {self.id} is not published (or was taken down) and cannot be remixed")
        payload = e.RemixRecorded(child_id=str(child_id), creator_id=creator_id)
        return self._record("RemixRecorded", payload, actor=creator_id, command_id=command_id)

    def record_remix_reinstated(self, child_id: UUID, case_id: str, actor: str, *, command_id: str | None) -> bool:
        """A remix of this video is live again (see `RemixReinstated`)."""
        if not self.is_live:
            raise RuleViolation(f"video {self.id} is not published (or was taken down): its remixes stay down")
        payload = e.RemixReinstated(child_id=str(child_id), case_id=case_id)
        return self._record("RemixReinstated", payload, actor=actor, command_id=command_id)

    def record_render(self, result: e.VideoRendered, actor: str, *, command_id: str | None) -> bool:
        return self._gate_result("VideoRendered", result, (REQUESTED,), actor, command_id)

    def record_render_failure(self, failure: e.RenderFailed, actor: str, *, command_id: str | None) -> bool:
        return self._gate_result("RenderFailed", failure, (REQUESTED,), actor, command_id)

    def record_moderation(self, decision: e.ModerationDecided, actor: str, *, command_id: str | None) -> bool:
        return self._gate_result("ModerationDecided", decision, self._moderatable(), actor, command_id)

    def record_signature(self, signature: e.VideoSigned, actor: str, *, command_id: str | None) -> bool:
        verdict = self.moderation.verdict if self.moderation else None
        repeat = command_id is not None and self.handled(command_id)
        if self.state == MODERATED and verdict != "allow" and not repeat:
            raise InvalidTransition(f"video {self.id} cannot be signed: its moderation verdict is {verdict}")
        return self._gate_result("VideoSigned", signature, (MODERATED,), actor, command_id)

    def publish(self, published: e.VideoPublished, actor: str, *, command_id: str | None) -> bool:
        return self._gate_result("VideoPublished", published, (SIGNED,), actor, command_id)

    def block(self, blocked: e.VideoBlocked, actor: str, *, command_id: str | None) -> bool:
        return self._gate_result("VideoBlocked", blocked, IN_FLIGHT, actor, command_id)

    def _moderatable(self) -> tuple[str, ...]:
        # A decision of "review" holds the video at the moderation gate until a person decides again.
        if self.is_held_for_review:
            return (MODERATED,)
        return (RENDERED,)

    def _gate_result(
        self,
        event_type: str,
        payload: e.Payload,
        allowed: tuple[str, ...],
        actor: str,
        command_id: str | None,
    ) -> bool:
        data = self._data(event_type, payload)
        if command_id is not None and self.already_handled(command_id, event_type, data):
            return False
        if self.state not in allowed:
            raise InvalidTransition(
                f"video {self.id} is {self.state}; {event_type} needs it to be {' or '.join(allowed)}"
            )
        self._append(event_type, data, actor=actor, command_id=command_id)
        return True

    # --- takedowns ---------------------------------------------------------------------------------------

    def take_down(self, takedown: e.TakedownIssued, actor: str, *, command_id: str | None) -> bool:
        data = self._data("TakedownIssued", takedown)
        if command_id is not None and self.already_handled(command_id, "TakedownIssued", data):
            return False
        if self.state != PUBLISHED:
            raise InvalidTransition(f"video {self.id} is {self.state}, not published: block it instead")
        if takedown.case_id in self.cases:
            raise RuleViolation(f"takedown case {takedown.case_id} already exists on video {self.id}")
        self._append("TakedownIssued", data, actor=actor, command_id=command_id)
        return True

    def appeal(self, appeal: e.TakedownAppealed, actor: str, *, command_id: str | None) -> bool:
        data = self._data("TakedownAppealed", appeal)
        if command_id is not None and self.already_handled(command_id, "TakedownAppealed", data):
            return False
        case = self._case(appeal.case_id)
        if actor != self.creator_id:
            raise RuleViolation(f"only the creator of video {self.id} can appeal its takedown")
        if case.status != "open":
            raise RuleViolation(f"takedown case {case.case_id} is {case.status} and cannot be appealed")
        self._append("TakedownAppealed", data, actor=actor, command_id=command_id)
        return True

    def reinstate(self, reinstated: e.VideoReinstated, actor: str, *, command_id: str | None) -> bool:
        data = self._data("VideoReinstated", reinstated)
        if command_id is not None and self.already_handled(command_id, "VideoReinstated", data):
            return False
        case = self._case(reinstated.case_id)
        if case.status == "reinstated":
            raise RuleViolation(f"takedown case {case.case_id} was already resolved by reinstatement")
        self._append("VideoReinstated", data, actor=actor, command_id=command_id)
        return True

    def open_cases(self) -> list[TakedownCase]:
        return [case for case in self.cases.values() if case.status != "reinstated"]

    def _case(self, case_id: str) -> TakedownCase:
        case = self.cases.get(case_id)
        if case is None:
            raise NotFound(f"video {self.id} has no takedown case {case_id}")
        return case

    # --- event handlers ----------------------------------------------------------------------------------

    def _apply_catalogue_event(self, event: Any) -> None:
        self.event_ids.append(event.event_id)
        super()._apply_catalogue_event(event)

    def _when_GenerationRequested(self, p: dict[str, Any], _: Any) -> None:
        self.creator_id = p["creator_id"]
        self.prompt = p["prompt"]
        self.parameters = dict(p["parameters"])
        self.seed = p["seed"]
        self.cameos = [e.CameoInVideo.model_validate(c) for c in p["cameos"]]
        self.remix_of = p["remix_of"]

    def _when_RemixRecorded(self, p: dict[str, Any], _: Any) -> None:
        self.children.append(UUID(p["child_id"]))

    def _when_RemixReinstated(self, p: dict[str, Any], _: Any) -> None:
        pass  # the remix was recorded when it was requested

    def _when_VideoRendered(self, p: dict[str, Any], _: Any) -> None:
        self.state = RENDERED
        self._keep("VideoRendered", p)

    def _when_RenderFailed(self, p: dict[str, Any], _: Any) -> None:
        self.state = RENDER_FAILED
        self.block_reasons = [p["reason"]]

    def _when_ModerationDecided(self, p: dict[str, Any], _: Any) -> None:
        self.state = MODERATED
        self._keep("ModerationDecided", p)

    def _when_VideoSigned(self, p: dict[str, Any], _: Any) -> None:
        self.state = SIGNED
        self._keep("VideoSigned", p)

    def _when_VideoPublished(self, p: dict[str, Any], _: Any) -> None:
        self.state = PUBLISHED

    def _when_VideoBlocked(self, p: dict[str, Any], _: Any) -> None:
        self.state = BLOCKED
        self.block_reasons = list(p["reasons"])

    def _when_TakedownIssued(self, p: dict[str, Any], event: Any) -> None:
        self.cases[p["case_id"]] = TakedownCase(
            case_id=p["case_id"],
            source=p["source"],
            reason_code=p["reason_code"],
            statement_of_reasons=p["statement_of_reasons"],
            event_id=event.event_id,
            caused_by=p.get("caused_by"),
        )

    def _when_TakedownAppealed(self, p: dict[str, Any], _: Any) -> None:
        self.cases[p["case_id"]].status = "appealed"

    def _when_VideoReinstated(self, p: dict[str, Any], _: Any) -> None:
        self.cases[p["case_id"]].status = "reinstated"
