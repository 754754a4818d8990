"""A video's life: requests (taken through the gates), review decisions, publishing, takedowns, appeals."""

from __future__ import annotations

from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field

from kernel.errors import NotFound, RuleViolation
from provenance.api.app import context
from provenance.api.routes.common import command_id
from provenance.api.security import AUDITOR, MEMBER, TRUST_AND_SAFETY, Principal, needs
from provenance.application.videos import MAX_CAMEOS
from provenance.domain.video import Video

router = APIRouter(tags=["videos"])


class GenerationBody(BaseModel):
    prompt: str = Field(min_length=1, max_length=1000)
    cameos: list[UUID] = Field(default_factory=list, max_length=MAX_CAMEOS)
    seed: int | None = Field(None, ge=0, le=2**63 - 1)
    remix_of: UUID | None = None
    duration_s: float | None = Field(None, ge=0.5, le=60)
    fps: int | None = Field(None, ge=1, le=60)
    width: int | None = Field(None, ge=64, le=2160)
    height: int | None = Field(None, ge=64, le=2160)


@router.post("/videos", status_code=202, summary="request a video; it is rendered, moderated, signed and published")
def request_video(
    body: GenerationBody,
    request: Request,
    response: Response,
    principal: Annotated[Principal, Depends(needs("write", MEMBER))],
) -> dict[str, Any]:
    ctx = context(request)
    parameters = body.model_dump(include={"duration_s", "fps", "width", "height"}, exclude_none=True)
    video_id = ctx.request_video(
        principal.person_id,
        body.prompt,
        parameters=parameters,
        seed=body.seed,
        cameo_ids=body.cameos,
        remix_of=body.remix_of,
        command_id=command_id(request, principal),
    )
    response.headers["Location"] = f"/videos/{video_id}"
    return {"video_id": str(video_id), "state": ctx.system.app.video(video_id).state}


@router.get("/videos/{video_id}", summary="a video's state and its trace (origin, gates, consent, takedowns)")
def video(video_id: UUID, request: Request, _: Annotated[Principal, Depends(needs("read"))]) -> dict[str, Any]:
    ctx = context(request)
    current = ctx.system.app.video(video_id)
    try:
        trace = ctx.reads().trace(str(video_id))
    except NotFound:
        trace = None
    return {"video_id": str(video_id), "state": current.state, "reasons": current.block_reasons, "trace": trace}


@router.get("/videos/{video_id}/file", summary="the signed file of a published video (video/mp4)")
def video_file(
    video_id: UUID, request: Request, principal: Annotated[Principal, Depends(needs("read"))]
) -> FileResponse:
    ctx = context(request)
    uri = file_for(ctx.system.app.video(video_id), principal)
    if uri is None:
        raise NotFound(f"video {video_id} has no file you may see")
    try:
        path = ctx.system.blobs.resolve(uri)
    except NotFound:
        raise NotFound(
            f"the file of video {video_id} is no longer kept: a video's files go when a likeness in it is erased"
        ) from None
    return FileResponse(path, media_type="video/mp4", filename=f"{video_id}.mp4")


def file_for(video: Video, principal: Principal) -> str | None:
    """The blob of the video's file this principal may watch, if any: the signed file while the video is live
    (trust and safety and auditors, always); the unsigned render (no manifest, no watermark) to them, and to
    its creator only while a person reviews it. A blocked or taken-down video's render is nobody else's."""
    staff = bool(principal.roles & {TRUST_AND_SAFETY, AUDITOR})
    if video.signature is not None and (video.is_live or staff):
        return video.signature.signed_uri
    if video.rendered is not None and (staff or (video.is_held_for_review and video.creator_id == principal.subject)):
        return video.rendered.blob_uri
    return None


@router.get("/review", summary="videos held for a person's decision, oldest first (trust and safety, auditors)")
def review_queue(
    request: Request, _: Annotated[Principal, Depends(needs("read", TRUST_AND_SAFETY, AUDITOR))]
) -> list[dict[str, Any]]:
    return list(context(request).reads().awaiting_review())


class Decision(BaseModel):
    verdict: Literal["allow", "block"]
    statement: str = Field(min_length=1, max_length=5000)


@router.post("/videos/{video_id}/review", summary="release (allow) or block a held video, with reasons")
def decide(
    video_id: UUID,
    body: Decision,
    request: Request,
    principal: Annotated[Principal, Depends(needs("write", TRUST_AND_SAFETY))],
) -> dict[str, Any]:
    ctx = context(request)
    ctx.decide_review(
        video_id, principal.person_id, body.verdict, body.statement, command_id=command_id(request, principal)
    )
    return {"video_id": str(video_id), "state": ctx.system.app.video(video_id).state}


@router.post("/videos/{video_id}/publish", summary="publish a signed video (consent is checked again)")
def publish(
    video_id: UUID, request: Request, principal: Annotated[Principal, Depends(needs("write", MEMBER))]
) -> dict[str, Any]:
    ctx = context(request)
    outcome = ctx.system.app.publish(video_id, actor=principal.subject, command_id=command_id(request, principal))
    ctx.reads()
    if not outcome.published:
        raise RuleViolation(f"video {video_id} was blocked at publish: {'; '.join(outcome.reasons)}")
    return {"video_id": str(video_id), "state": "published"}


class Takedown(BaseModel):
    reason_code: str = Field(min_length=1, max_length=100)
    statement: str = Field(min_length=1, max_length=5000)
    policy_clause: str | None = Field(None, max_length=500)
    legal_ground: str | None = Field(None, max_length=500)
    source: Literal["notice", "own_initiative"] | None = None


@router.post(
    "/videos/{video_id}/takedowns",
    status_code=201,
    summary="take a video and its remixes down, with a statement of reasons",
)
def take_down(
    video_id: UUID,
    body: Takedown,
    request: Request,
    principal: Annotated[Principal, Depends(needs("write", MEMBER, TRUST_AND_SAFETY))],
) -> list[dict[str, Any]]:
    ctx = context(request)
    records = ctx.system.app.take_down(
        video_id,
        principal.person_id,
        reason_code=body.reason_code,
        statement_of_reasons=body.statement,
        policy_clause=body.policy_clause,
        legal_ground=body.legal_ground,
        source=body.source,
        command_id=command_id(request, principal),
    )
    ctx.reads()
    return [dict(record.__dict__) for record in records]


class Appeal(BaseModel):
    grounds: str = Field(min_length=1, max_length=5000)


@router.post("/videos/{video_id}/takedowns/{case_id}/appeal", summary="appeal a takedown of your video")
def appeal(
    video_id: UUID,
    case_id: str,
    body: Appeal,
    request: Request,
    principal: Annotated[Principal, Depends(needs("write", MEMBER))],
) -> dict[str, str]:
    ctx = context(request)
    ctx.system.app.appeal(
        video_id, case_id, principal.person_id, body.grounds, command_id=command_id(request, principal)
    )
    ctx.reads()
    return {"video_id": str(video_id), "case_id": case_id, "status": "appealed"}


class Reinstatement(BaseModel):
    decision: str = Field(min_length=1, max_length=5000)


@router.post("/videos/{video_id}/takedowns/{case_id}/reinstate", summary="reinstate a video, closing its case")
def reinstate(
    video_id: UUID,
    case_id: str,
    body: Reinstatement,
    request: Request,
    principal: Annotated[Principal, Depends(needs("write", TRUST_AND_SAFETY))],
) -> dict[str, str]:
    ctx = context(request)
    ctx.system.app.reinstate(
        video_id, case_id, principal.person_id, body.decision, command_id=command_id(request, principal)
    )
    ctx.reads()
    return {"video_id": str(video_id), "case_id": case_id, "status": "reinstated"}
