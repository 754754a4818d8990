"""People and cameos: sign-up, follows, cameos with their reference image, grants, revocations, erasure."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from kernel.errors import NotPermitted
from provenance.api.accounts import MAX_SECRET, MIN_PASSWORD
from provenance.api.app import context
from provenance.api.problems import ApiError
from provenance.api.routes.common import body_bytes, command_id
from provenance.api.security import (
    ADMINISTRATOR,
    MEMBER,
    TRUST_AND_SAFETY,
    Principal,
    authenticate,
    client_network,
    limit,
    needs,
)
from provenance.cli import render

router = APIRouter(tags=["people and cameos"])


class SignUp(BaseModel):
    handle: str = Field(min_length=1, max_length=64)
    name: str = Field("", max_length=200)
    password: str = Field(min_length=MIN_PASSWORD, max_length=MAX_SECRET)


@router.post("/people", status_code=201, summary="create a member account (open, or administrators only)")
def sign_up(body: SignUp, request: Request) -> dict[str, Any]:
    ctx = context(request)
    principal: Principal | None = None
    if not ctx.system.settings.api_open_signup:
        principal = authenticate(request)
        if ADMINISTRATOR not in principal.roles or "admin" not in principal.scopes:
            raise ApiError(403, "forbidden", "accounts are created by an administrator here")
    limit(ctx.sign_in_limiter, f"sign-up:{client_network(request)}")  # a party's many addresses count as one
    person_id = ctx.system.app.register_person(
        body.handle, body.name, ["member"], command_id=command_id(request, principal)
    )
    if not ctx.accounts.has_password(str(person_id)):
        ctx.accounts.set_password(str(person_id), body.password)
    return {"person_id": str(person_id), "handle": body.handle}


@router.get("/people/{handle}", summary="a person's public profile")
def person(handle: str, request: Request, _: Annotated[Principal, Depends(needs("read"))]) -> dict[str, Any]:
    found = context(request).system.app.person_by_handle(handle)
    return {"person_id": str(found.id), "handle": found.handle, "name": found.display_name, "roles": found.roles}


@router.post("/people/{handle}/follow", status_code=204, summary="follow someone")
def follow(handle: str, request: Request, principal: Annotated[Principal, Depends(needs("write", MEMBER))]) -> None:
    app = context(request).system.app
    app.follow(principal.person_id, app.person_by_handle(handle).id, command_id=command_id(request, principal))


@router.post("/people/{handle}/unfollow", status_code=204, summary="stop following someone")
def unfollow(handle: str, request: Request, principal: Annotated[Principal, Depends(needs("write", MEMBER))]) -> None:
    ctx = context(request)
    ctx.system.app.unfollow(
        principal.person_id, ctx.system.app.person_by_handle(handle).id, command_id=command_id(request, principal)
    )
    ctx.reads()  # the consent watch re-checks mutual grants now, in the embedded mode


@router.post("/cameos", status_code=201, summary="register your likeness: the body is the reference image")
async def register_cameo(
    request: Request, principal: Annotated[Principal, Depends(needs("write", MEMBER))]
) -> dict[str, Any]:
    from starlette.concurrency import run_in_threadpool

    image = await body_bytes(request)
    ctx = context(request)
    cameo_id = await run_in_threadpool(
        ctx.system.app.register_cameo, principal.person_id, image, command_id=command_id(request, principal)
    )
    held = await run_in_threadpool(ctx.system.verify_cameo, cameo_id)
    return {"cameo_id": str(cameo_id), "held": held}


Purpose = Literal["generate", "remix"]
BOTH_PURPOSES: tuple[Purpose, ...] = ("generate", "remix")


class GrantBody(BaseModel):
    audience: Literal["only_me", "approved", "mutuals", "everyone"]
    to: list[str] = Field(default_factory=list, max_length=1000, description="handles, for the approved audience")
    scope: list[Purpose] = Field(default_factory=lambda: list(BOTH_PURPOSES), min_length=1)
    expires_at: datetime | None = None


@router.post("/cameos/{cameo_id}/grants", status_code=201, summary="grant consent to use your cameo")
def grant(
    cameo_id: UUID, body: GrantBody, request: Request, principal: Annotated[Principal, Depends(needs("write", MEMBER))]
) -> dict[str, str]:
    from datetime import UTC

    ctx = context(request)
    app = ctx.system.app
    expires = body.expires_at
    if expires is not None and expires.tzinfo is None:
        expires = expires.replace(tzinfo=UTC)
    grant_id = app.grant_consent(
        principal.person_id,
        cameo_id,
        body.audience,
        grantees=[app.person_by_handle(h).id for h in body.to],
        scope=body.scope,
        expires_at=expires,
        command_id=command_id(request, principal),
    )
    ctx.reads()
    return {"grant_id": grant_id}


class Reason(BaseModel):
    reason: str = Field(min_length=1, max_length=2000)


@router.post("/cameos/{cameo_id}/grants/{grant_id}/revoke", summary="revoke a grant: its videos come down")
def revoke(
    cameo_id: UUID,
    grant_id: str,
    body: Reason,
    request: Request,
    principal: Annotated[Principal, Depends(needs("write", MEMBER))],
) -> dict[str, Any]:
    ctx = context(request)
    outcome = ctx.system.app.revoke_consent(
        principal.person_id, cameo_id, grant_id, body.reason, command_id=command_id(request, principal)
    )
    ctx.reads()
    return render.revocation_json(outcome)


class Unapprove(BaseModel):
    person: str = Field(min_length=1, max_length=64, description="the handle to take off the approved list")


@router.post("/cameos/{cameo_id}/grants/{grant_id}/unapprove", summary="take a person off a grant's approved list")
def unapprove(
    cameo_id: UUID,
    grant_id: str,
    body: Unapprove,
    request: Request,
    principal: Annotated[Principal, Depends(needs("write", MEMBER))],
) -> dict[str, Any]:
    ctx = context(request)
    app = ctx.system.app
    outcome = app.remove_grantee(
        principal.person_id,
        cameo_id,
        grant_id,
        app.person_by_handle(body.person).id,
        command_id=command_id(request, principal),
    )
    ctx.reads()
    return render.revocation_json(outcome)


@router.post("/cameos/{cameo_id}/erase", summary="erase your likeness data (its key is destroyed)")
def erase(
    cameo_id: UUID, body: Reason, request: Request, principal: Annotated[Principal, Depends(needs("write", MEMBER))]
) -> dict[str, Any]:
    ctx = context(request)
    outcome = ctx.system.app.erase_cameo(
        principal.person_id, cameo_id, body.reason, command_id=command_id(request, principal)
    )
    ctx.reads()
    return render.revocation_json(outcome)


@router.get("/cameos/{cameo_id}/videos", summary="every video that uses the cameo (its owner, trust and safety)")
def cameo_videos(
    cameo_id: UUID, request: Request, principal: Annotated[Principal, Depends(needs("read", MEMBER, TRUST_AND_SAFETY))]
) -> list[dict[str, Any]]:
    return render.cameo_video_rows(context(request).system.app.videos_with_cameo(principal.person_id, cameo_id))


@router.get("/cameos/{cameo_id}/grants", summary="a cameo's grants (its owner, trust and safety, auditors)")
def cameo_grants(
    cameo_id: UUID, request: Request, principal: Annotated[Principal, Depends(needs("read"))]
) -> list[dict[str, Any]]:
    ctx = context(request)
    cameo = ctx.system.app.cameo(cameo_id)
    if cameo.owner_id != principal.subject and not principal.roles & {TRUST_AND_SAFETY, "auditor"}:
        raise NotPermitted("only the cameo's owner, trust and safety or an auditor sees its grants")
    return list(ctx.reads().grants(str(cameo_id)))


class Review(BaseModel):
    decision: Literal["cleared", "rejected"]
    statement: str = Field(min_length=1, max_length=5000)


@router.post("/cameos/{cameo_id}/review", summary="clear or reject a cameo held as a possible impersonation")
def review_cameo(
    cameo_id: UUID,
    body: Review,
    request: Request,
    principal: Annotated[Principal, Depends(needs("write", TRUST_AND_SAFETY))],
) -> dict[str, str]:
    ctx = context(request)
    ctx.system.app.review_cameo(
        cameo_id, principal.person_id, body.decision, body.statement, command_id=command_id(request, principal)
    )
    ctx.reads()
    return {"cameo_id": str(cameo_id), "decision": body.decision}
