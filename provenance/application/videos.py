"""Commands on videos: the request (with consent checked before anything is rendered), the gates' results,
and publishing (with every cameo's consent checked again, now)."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from kernel.errors import CommandConflict, InvalidInput, NotPermitted, ProvenanceError, RuleViolation
from provenance.application.service import SYSTEM, Service, uuid_of
from provenance.domain.cameo import Cameo
from provenance.domain.ids import derived_id, new_command_id
from provenance.domain.payloads import on_record, payload
from provenance.domain.person import Person
from provenance.domain.stream import EventStream
from provenance.domain.video import MODERATED, PUBLISHED, Video
from schemas import events as e

MAX_CAMEOS = 8
"""Likenesses one video may hold, its parent's included (the renderer's `generator.spec.MAX_CAMEOS`)."""
FRAMES_PER_CAMEO = 2
"""The fewest frames the renderer needs for each likeness in a clip (as `generator.spec` checks)."""
MAX_PROMPT = 1000
"""The longest prompt the renderer takes (`generator.spec.MAX_PROMPT_CHARS`)."""
MAX_REMIX_DEPTH = 32
"""Videos in a remix chain, the original included: each signed file carries every ancestor's manifest, so a
chain's storage grows with the square of its length, outside any one request's render budget."""


@dataclass(frozen=True)
class PublishOutcome:
    published: bool
    reasons: list[str] = field(default_factory=list)


class VideoCommands(Service):
    def request_generation(
        self,
        actor: UUID,
        prompt: str,
        *,
        parameters: dict[str, Any] | None = None,
        seed: int | None = None,
        cameo_ids: Iterable[UUID | str] = (),
        remix_of: UUID | str | None = None,
        command_id: str | None = None,
    ) -> UUID:
        """Record a generation request, refused before anything is recorded if any consent is missing or the
        renderer could not take it.

        A repeated command id answers the video it made if the request is the same one, as recorded (its
        parameters with their defaults, its seed, its cameos, a remix's inherited ones), even where the request
        would be refused now (its parent came down since); any other request under it is a conflict.
        """
        on_record(prompt, "a prompt", MAX_PROMPT)
        if "\x00" in prompt:
            raise InvalidInput("a prompt cannot hold a NUL character")
        command_id = command_id or new_command_id()
        video_id = UUID(derived_id("video", command_id))
        default_seed = int.from_bytes(hashlib.sha256(command_id.encode()).digest()[:7])
        requested_cameos = list(dict.fromkeys(str(c) for c in cameo_ids))
        attempts = 0

        def run() -> UUID:
            nonlocal attempts
            attempts += 1
            creator = self.registered(actor)
            # A repeated command id is found by the save itself: the video's first event is already there, the
            # save conflicts and the command runs again, this time looking for the video it made before.
            if attempts > 1 and self.exists(video_id):
                return answered(creator)
            try:
                return requested(creator)
            except ProvenanceError:
                if self.exists(video_id):  # made before, and refused now (its parent came down since)
                    return answered(creator)
                raise

        def answered(creator: Person) -> UUID:
            """The video the command id made, if this is the same request; a conflict otherwise."""
            earlier = self.video(video_id)
            parent = self.video(earlier.remix_of) if earlier.remix_of is not None else None
            try:
                inherited = parent.parameters if parent else {}
                resolved = payload(e.GenerationParameters, **{**inherited, **(parameters or {})})
            except InvalidInput:  # parameters that were never valid: not what the command id recorded
                resolved = None
            expected_seed = seed if seed is not None else parent.seed if parent else default_seed
            expected_cameos = {*(parent.cameo_ids if parent else []), *requested_cameos}
            same = (
                earlier.creator_id == str(creator.id)
                and earlier.prompt == prompt
                and earlier.remix_of == (str(uuid_of(remix_of, "video")) if remix_of is not None else None)
                and earlier.seed == expected_seed
                and set(earlier.cameo_ids) == expected_cameos
                and resolved is not None
                and earlier.parameters == resolved.model_dump(mode="json")
            )
            if not same:
                raise CommandConflict(f"command id {command_id} was already used for a different command")
            return video_id

        def requested(creator: Person) -> UUID:
            now = self.clock()
            params = dict(parameters or {})
            chosen_seed = default_seed if seed is None else seed
            parent: Video | None = None
            inherited: list[str] = []
            if remix_of is not None:
                parent = self.video(remix_of)
                if not parent.is_live:
                    raise RuleViolation(f"video {parent.id} is not published (or was taken down): it cannot be remixed")
                length, ancestor = 2, parent  # the chain this remix would end, itself included
                while ancestor.remix_of is not None and length <= MAX_REMIX_DEPTH:
                    ancestor, length = self.video(ancestor.remix_of), length + 1
                if length > MAX_REMIX_DEPTH:
                    raise RuleViolation(f"a remix chain holds at most {MAX_REMIX_DEPTH} videos: remix an earlier one")
                params = {**parent.parameters, **params}
                inherited = parent.cameo_ids
                # A remix keeps its parent's seed unless told otherwise, so what the prompts share moves alike.
                chosen_seed = parent.seed if seed is None else chosen_seed
            cameos: list[Cameo] = []
            in_video: list[e.CameoInVideo] = []
            every_cameo = list(dict.fromkeys([*inherited, *requested_cameos]))
            if len(every_cameo) > MAX_CAMEOS:
                raise InvalidInput(
                    f"a video holds at most {MAX_CAMEOS} cameos; this one would hold {len(every_cameo)}"
                    + (f", {len(inherited)} of them from the video it remixes" if inherited else "")
                )
            for cameo_id in every_cameo:
                cameo = self.cameo(cameo_id)
                purpose = "remix" if cameo_id in inherited else "generate"
                grant_id = self.consent(cameo, str(creator.id), purpose, now)
                cameos.append(cameo)
                in_video.append(e.CameoInVideo(cameo_id=str(cameo.id), grant_id=grant_id))
            request = payload(
                e.GenerationRequested,
                creator_id=str(creator.id),
                prompt=prompt,
                parameters=params,
                seed=chosen_seed,
                cameos=in_video,
                remix_of=str(parent.id) if parent else None,
            )
            spec = request.parameters
            frames = max(1, math.floor(spec.duration_s * spec.fps + 0.5))
            if frames < FRAMES_PER_CAMEO * len(in_video):
                raise InvalidInput(
                    f"{len(in_video)} cameos need at least {FRAMES_PER_CAMEO * len(in_video)} frames; this clip has "
                    f"{frames}: make it longer or raise the fps"
                )
            cost = spec.width * spec.height * spec.fps * spec.duration_s
            if cost > self.max_render_cost:
                raise InvalidInput(
                    f"the request asks for {cost:,.0f} pixel-frames ({spec.width}x{spec.height}, {spec.fps} fps, "
                    f"{spec.duration_s:g} s); at most {self.max_render_cost:,} are rendered per request"
                )
            video = Video.request(video_id, request, command_id=command_id)
            for cameo, used in zip(cameos, in_video, strict=True):
                cameo.record_use(video_id, str(creator.id), used.grant_id, command_id=command_id)
            touched: list[EventStream] = [video, *cameos]
            if parent is not None:
                parent.record_remix(video_id, str(creator.id), command_id=command_id)
                touched.append(parent)
            self.save(*touched)
            return video_id

        return self._retrying(run)

    def record_render(
        self, video_id: UUID | str, rendered: e.VideoRendered, *, command_id: str, actor: str = "system:generator"
    ) -> bool:
        return self._on_video(video_id, lambda v: v.record_render(rendered, actor, command_id=command_id))

    def record_render_failure(
        self,
        video_id: UUID | str,
        reason: str,
        *,
        retryable: bool = False,
        command_id: str,
        actor: str = "system:generator",
    ) -> bool:
        failure = payload(e.RenderFailed, reason=reason, retryable=retryable)
        return self._on_video(video_id, lambda v: v.record_render_failure(failure, actor, command_id=command_id))

    def record_moderation(
        self,
        video_id: UUID | str,
        decided: e.ModerationDecided,
        *,
        command_id: str,
        actor: str = "system:moderation",
    ) -> bool:
        """Record the decision; a `block` verdict also blocks the video at the moderation gate."""
        if not actor.startswith(f"{SYSTEM}:") and not self.is_trust_and_safety(actor):
            raise NotPermitted("only trust and safety can record a moderation decision by hand")

        def apply(video: Video) -> bool:
            recorded = video.record_moderation(decided, actor, command_id=command_id)
            if decided.verdict == "block":
                reasons = decided.reasons or ["a classifier blocked it"]
                recorded |= video.block(
                    e.VideoBlocked(gate="moderation", reasons=reasons), actor, command_id=command_id
                )
            return recorded

        return self._on_video(video_id, apply)

    def decide_review(
        self,
        video_id: UUID | str,
        actor: UUID | str,
        verdict: str,
        statement: str,
        *,
        command_id: str | None = None,
    ) -> bool:
        """A person's decision on a video the classifiers held for review: `allow` lets it go on to signing,
        `block` blocks it; either is recorded as a new moderation decision with the statement as its reason."""
        command_id = command_id or new_command_id()
        if verdict not in ("allow", "block"):
            raise InvalidInput(f"a review decides allow or block, not {verdict!r}")
        on_record(statement, "a review's statement of reasons")
        if not self.is_trust_and_safety(actor):
            raise NotPermitted("only trust and safety can decide a review")
        video = self.video(video_id)
        held = video.moderation
        if not video.handled(command_id) and (video.state != MODERATED or held is None or held.verdict != "review"):
            raise RuleViolation(f"video {video.id} is not held for review (it is {video.state})")
        assert held is not None
        handle = self.person(actor).handle
        reasons = [f"reviewed by {handle}: {statement}"]
        decided = payload(e.ModerationDecided, **{**held.model_dump(), "verdict": verdict, "reasons": reasons})
        return self.record_moderation(video.id, decided, command_id=command_id, actor=str(actor))

    def record_signature(
        self, video_id: UUID | str, signed: e.VideoSigned, *, command_id: str, actor: str = "system:signing"
    ) -> bool:
        return self._on_video(video_id, lambda v: v.record_signature(signed, actor, command_id=command_id))

    def block(
        self, video_id: UUID | str, gate: str, reasons: list[str], *, command_id: str, actor: str = "system:gate"
    ) -> bool:
        blocked = payload(e.VideoBlocked, gate=gate, reasons=reasons)
        return self._on_video(video_id, lambda v: v.block(blocked, actor, command_id=command_id))

    def publish(
        self, video_id: UUID | str, *, command_id: str | None = None, actor: str = "system:gate"
    ) -> PublishOutcome:
        """Publish a signed video, re-checking every cameo's consent now; a lapsed consent blocks it instead."""
        command_id = command_id or new_command_id()

        def run() -> PublishOutcome:
            video = self._writing(lambda: self.video(video_id))
            if not actor.startswith(f"{SYSTEM}:") and actor != video.creator_id:
                raise NotPermitted(f"only the creator of video {video.id} can publish it")
            if video.handled(command_id):
                return PublishOutcome(video.state == PUBLISHED, list(video.block_reasons))
            now = self.clock()
            checked = self.live_check(video, now)
            if checked.reasons:
                video.block(e.VideoBlocked(gate="consent", reasons=checked.reasons), actor, command_id=command_id)
                self.save(video)
                return PublishOutcome(False, checked.reasons)
            consented = [e.CameoInVideo(cameo_id=c, grant_id=checked.granted[c]) for c in video.cameo_ids]
            video.publish(e.VideoPublished(consent_checked=consented), actor, command_id=command_id)
            self.save(video)
            return PublishOutcome(True)

        return self._retrying(run)
