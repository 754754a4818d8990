"""The gate workers: requested -> rendered -> moderated -> signed -> published.

Each worker consumes one event type from the log and sends one command back to the write side. The command
id is derived from the id of the event that triggered it, so a redelivered event, or a worker that crashed
after recording and runs again, records nothing twice. A stage that fails on the content records why (a
render failure, or a block at the moderation or signing gate): a video is never passed on by default.

A failure of the infrastructure is no verdict on the video and is never recorded as one: a full disk, a blob
the store lost, a damaged signing identity, model weights that do not load, a time-stamp authority or a
database that does not answer (`is_infrastructure`). It raises out of the worker and leaves the video where
it is; the event is handled again (a retried batch, a parked event replayed, the same `generate` command id),
and the same command id keeps that idempotent.

The stages themselves (render, moderate, sign) are behind small protocols, so the same workers run in the
embedded runner and in Kafka consumer groups, with real or development models.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from uuid import UUID

import sqlalchemy as sa

from kernel.errors import InfrastructureFailure, InvalidTransition, NotFound, ProvenanceError
from projections.framework import read_checkpoint, write_checkpoint
from provenance.application import ProvenanceApp
from provenance.domain.video import MODERATED, RENDERED, REQUESTED, SIGNED, Video
from schemas import events as e
from schemas.envelope import EventEnvelope

log = logging.getLogger(__name__)


def is_infrastructure(exc: BaseException) -> bool:
    """Whether a stage failed for a reason of the machine or of the system's own setup, not of the content.

    Only the other failures (a render the content makes impossible, a video moderation cannot read) are
    recorded against the video; these leave it where it is, to be handled again once the cause is fixed.
    """
    from provenance.kafka.errors import is_transient

    return isinstance(exc, (InfrastructureFailure, OSError)) or is_transient(exc)


@dataclass(frozen=True)
class RenderJob:
    video_id: str
    prompt: str
    seed: int
    parameters: e.GenerationParameters
    cameo_images: dict[str, bytes]


@dataclass(frozen=True)
class ModerationJob:
    video_id: str
    video_path: Path
    creator_id: str
    granted_cameos: dict[str, str]
    """cameo id -> grant id, for the cameos this video may show."""
    known_cameos: dict[str, bytes]
    """cameo id -> reference image of the cameos the video was requested with; every other registered
    likeness is compared through the moderation stage's index."""


@dataclass(frozen=True)
class SigningJob:
    video_id: str
    video_path: Path
    event_ids: list[str]
    generator: e.GeneratorInfo
    moderation: e.ModerationDecided
    cameos: list[e.CameoInVideo]
    remix_of: str | None
    parent_signed_path: Path | None


class RenderStage(Protocol):
    def render(self, job: RenderJob) -> e.VideoRendered:
        """Render and store the video; returns the `VideoRendered` payload. Raises ProvenanceError."""
        ...


class ModerationStage(Protocol):
    def moderate(self, job: ModerationJob) -> e.ModerationDecided:
        """Returns the `ModerationDecided` payload. Raises ProvenanceError when it cannot decide."""
        ...


class SigningStage(Protocol):
    def sign(self, job: SigningJob) -> e.VideoSigned:
        """Watermark, sign and store the video; returns the `VideoSigned` payload."""
        ...


class GateWorkers:
    """Routes each event to the worker for it; unrelated events are ignored."""

    def __init__(
        self,
        app: ProvenanceApp,
        render: RenderStage | None = None,
        moderate: ModerationStage | None = None,
        sign: SigningStage | None = None,
    ) -> None:
        self.app = app
        self.render_stage = render
        self.moderation_stage = moderate
        self.signing_stage = sign

    def handlers(self) -> dict[str, Callable[[EventEnvelope], None]]:
        """Worker name -> handler, for the stages this process runs; each keeps its own checkpoint."""
        handlers: dict[str, Callable[[EventEnvelope], None]] = {"publish": self._only("VideoSigned", self._publish)}
        if self.render_stage is not None:
            handlers["render"] = self._only("GenerationRequested", self._render)
        if self.moderation_stage is not None:
            handlers["moderation"] = self._only("VideoRendered", self._moderate)
        if self.signing_stage is not None:
            handlers["signing"] = self._only("ModerationDecided", self._sign)
        return handlers

    def consumers(self, engine: sa.Engine) -> list[WorkerConsumer]:
        return [WorkerConsumer(f"worker:{name}", engine, handler) for name, handler in self.handlers().items()]

    @staticmethod
    def _only(event_type: str, handler: Callable[[EventEnvelope], None]) -> Callable[[EventEnvelope], None]:
        def handle(event: EventEnvelope) -> None:
            if event.event_type == event_type:
                handler(event)

        return handle

    def _current(self, event: EventEnvelope, expected: str) -> Video | None:
        """The video if it is still where this event left it; None when it has moved on or was blocked."""
        video = self.app.video(event.stream_id)
        if video.state != expected or video.version != event.stream_version:
            return None
        return video

    def _render(self, event: EventEnvelope) -> None:
        assert self.render_stage is not None
        video = self._current(event, REQUESTED)
        if video is None:
            return
        command_id = f"render:{event.event_id}"
        try:
            images = {c: self.app.cameo_reference(c) for c in video.cameo_ids}
            parameters = e.GenerationParameters.model_validate(video.parameters)
            job = RenderJob(str(video.id), video.prompt, video.seed, parameters, images)
            payload = self.render_stage.render(job)
        except ProvenanceError as exc:
            if is_infrastructure(exc):
                raise
            log.warning("render of %s failed: %s", video.id, exc)
            self.app.record_render_failure(video.id, str(exc), command_id=command_id)
            return
        self._record_unless_moved_on(
            video.id, lambda: self.app.record_render(video.id, payload, command_id=command_id), payload.blob_uri
        )

    def _moderate(self, event: EventEnvelope) -> None:
        assert self.moderation_stage is not None
        video = self._current(event, RENDERED)
        if video is None or video.rendered is None:
            return
        command_id = f"moderate:{event.event_id}"
        try:
            known = {}
            for cameo_id in video.cameo_ids:
                try:
                    known[cameo_id] = self.app.cameo_reference(cameo_id)
                except ProvenanceError as exc:
                    if is_infrastructure(exc):  # a lost key store: no reason to compare with nothing
                        raise
                    continue  # erased since: nothing left to compare with
            job = ModerationJob(
                video_id=str(video.id),
                video_path=self._stored(video.rendered.blob_uri, "rendered file"),
                creator_id=video.creator_id,
                granted_cameos={c.cameo_id: c.grant_id for c in video.cameos},
                known_cameos=known,
            )
            decision = self.moderation_stage.moderate(job)
        except ProvenanceError as exc:
            if is_infrastructure(exc):
                raise
            log.warning("moderation of %s failed, blocking it: %s", video.id, exc)
            self.app.block(video.id, "moderation", [f"moderation could not run: {exc}"], command_id=command_id)
            return
        self._record_unless_moved_on(
            video.id, lambda: self.app.record_moderation(video.id, decision, command_id=command_id)
        )

    def _stored(self, uri: str, what: str) -> Path:
        """The path of a stage's input in the blob store; one the store lost is its failure, not the video's."""
        try:
            return self.app.blobs.resolve(uri)
        except NotFound as exc:
            raise InfrastructureFailure(f"the {what} is missing from the blob store: {exc}") from exc

    def _record_unless_moved_on(self, video_id: UUID, record: Callable[[], bool], output: str | None = None) -> None:
        """Record a stage's result, unless the video was blocked (a consent revoked) while the stage ran; then
        the file it made (`output`) goes too if it shows a likeness (`discard_dropped_output`)."""
        try:
            record()
        except InvalidTransition as exc:
            log.info("video %s moved on while its stage ran; result dropped: %s", video_id, exc)
            if output is not None:
                self.app.discard_dropped_output(video_id, output)

    def _sign(self, event: EventEnvelope) -> None:
        assert self.signing_stage is not None
        video = self._current(event, MODERATED)
        if video is None or video.moderation is None or video.moderation.verdict != "allow":
            return
        command_id = f"sign:{event.event_id}"
        try:
            assert video.rendered is not None
            parent_signed: Path | None = None
            if video.remix_of:
                parent = self.app.video(video.remix_of)
                if parent.signature is not None:
                    parent_signed = self._stored(parent.signature.signed_uri, "parent's signed file")
            job = SigningJob(
                video_id=str(video.id),
                video_path=self._stored(video.rendered.blob_uri, "rendered file"),
                event_ids=list(video.event_ids),
                generator=video.rendered.generator,
                moderation=video.moderation,
                cameos=list(video.cameos),
                remix_of=video.remix_of,
                parent_signed_path=parent_signed,
            )
            payload = self.signing_stage.sign(job)
        except ProvenanceError as exc:
            if is_infrastructure(exc):
                raise
            log.warning("signing of %s failed, blocking it: %s", video.id, exc)
            self.app.block(video.id, "signing", [f"signing failed: {exc}"], command_id=command_id)
            return
        self._record_unless_moved_on(
            video.id, lambda: self.app.record_signature(video.id, payload, command_id=command_id), payload.signed_uri
        )

    def _publish(self, event: EventEnvelope) -> None:
        if self._current(event, SIGNED) is None:
            return
        outcome = self.app.publish(event.stream_id, command_id=f"publish:{event.event_id}")
        if not outcome.published:
            log.info("video %s blocked at publish: %s", event.stream_id, "; ".join(outcome.reasons))


class WorkerConsumer:
    """Gate workers behind the consumer interface, with their checkpoint in the projections database.

    At-least-once: the checkpoint is written after the batch's commands; a crash in between re-delivers
    events whose commands are idempotent.
    """

    def __init__(self, name: str, engine: sa.Engine, handle: Callable[[EventEnvelope], None]) -> None:
        self.name = name
        self.engine = engine
        self.handle_one = handle

    def checkpoint(self, source: str, partition: int) -> int | None:
        with self.engine.connect() as conn:
            return read_checkpoint(conn, self.name, source, partition)

    def handle(self, batch: Sequence[EventEnvelope], source: str, partition: int) -> None:
        for event in batch:
            self.handle_one(event)
        last = batch[-1].position if batch else None
        if last is not None:
            with self.engine.begin() as conn:
                write_checkpoint(conn, self.name, source, partition, last)
