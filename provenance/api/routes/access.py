"""Signing in and out, tokens (OAuth2 client credentials for platforms), roles and clients (administrators)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Form, Request, Response
from pydantic import BaseModel, Field

from provenance.api.accounts import MAX_SECRET, check_scopes
from provenance.api.app import context
from provenance.api.problems import ApiError
from provenance.api.routes.common import command_id
from provenance.api.security import (
    ADMINISTRATOR,
    ROLES,
    SESSION_COOKIE,
    SIGN_IN_TTL_S,
    Principal,
    any_caller,
    client_address,
    limit,
    needs,
    set_session_cookie,
    sign_in_person,
)

router = APIRouter(tags=["access"])

CLIENT_TOKEN_TTL_S = 3600


class SignIn(BaseModel):
    handle: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=MAX_SECRET)
    session: bool = Field(False, description="also set an HttpOnly session cookie (for a browser)")


class Issued(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int
    scope: str
    csrf_token: str | None = None
    """For a browser session: the value to send in `X-CSRF-Token` with unsafe requests."""


@router.post("/auth/sign-in", summary="sign in with a password; get a bearer token (and a session cookie)")
def sign_in(body: SignIn, request: Request, response: Response) -> Issued:
    issued = sign_in_person(request, body.handle, body.password, session=body.session)
    if issued is None:
        raise ApiError(
            401, "unauthorized", "wrong handle or password", {"WWW-Authenticate": 'Bearer realm="provenance"'}
        )
    secret, token = issued
    if body.session:
        set_session_cookie(request, response, secret)
    return Issued(
        access_token=secret,
        expires_in=SIGN_IN_TTL_S,
        scope=" ".join(sorted(token.scopes)),
        csrf_token=token.csrf if body.session else None,
    )


@router.post("/auth/sign-out", status_code=204, summary="revoke the token (or session) this request used")
def sign_out(request: Request, principal: Annotated[Principal, Depends(any_caller)]) -> Response:
    context(request).accounts.revoke(principal.token.token_id)
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE)
    return response


@router.post("/auth/token", summary="OAuth2 client credentials (RFC 6749 4.4) for platform clients")
def client_token(
    request: Request,
    grant_type: Annotated[str, Form(max_length=50)],
    client_id: Annotated[str, Form(max_length=64)],
    client_secret: Annotated[str, Form(max_length=MAX_SECRET)],
    scope: Annotated[str, Form(max_length=500)] = "",
) -> Issued:
    ctx = context(request)
    limit(ctx.credentials_limiter, f"credentials:{client_address(request)}")
    limit(ctx.sign_in_limiter, f"client:{client_address(request)}:{client_id}")
    if grant_type != "client_credentials":
        raise ApiError(400, "unsupported-grant-type", "only grant_type=client_credentials is supported")
    client = ctx.accounts.check_client(client_id, client_secret)
    if client is None:
        raise ApiError(401, "invalid-client", "unknown client or wrong secret")
    asked = frozenset(scope.split()) if scope else client.scopes
    if not asked <= client.scopes:
        raise ApiError(400, "invalid-scope", f"the client may ask for {' '.join(sorted(client.scopes))}")
    secret, token = ctx.accounts.issue("client", client.client_id, asked, CLIENT_TOKEN_TTL_S)
    return Issued(access_token=secret, expires_in=CLIENT_TOKEN_TTL_S, scope=" ".join(sorted(token.scopes)))


@router.get("/me", summary="who this token belongs to, with its roles and scopes")
def me(principal: Annotated[Principal, Depends(needs("read", *ROLES))]) -> dict[str, Any]:
    return {
        "kind": principal.kind,
        "id": principal.subject,
        "name": principal.name,
        "roles": sorted(principal.roles),
        "scopes": sorted(principal.scopes),
        "expires_at": principal.token.expires_at,
    }


class RoleChange(BaseModel):
    role: Literal["member", "trust_and_safety", "auditor", "administrator"]
    reason: str = Field("", max_length=2000, description="why a role is revoked (kept on record)")


@router.post("/people/{handle}/roles", summary="grant a role (administrators); recorded as RoleGranted")
def grant_role(
    handle: str,
    body: RoleChange,
    request: Request,
    principal: Annotated[Principal, Depends(needs("admin", ADMINISTRATOR))],
) -> dict[str, Any]:
    return _change_role(request, principal, handle, body, grant=True)


@router.post("/people/{handle}/roles/revoke", summary="revoke a role, with a reason (administrators)")
def revoke_role(
    handle: str,
    body: RoleChange,
    request: Request,
    principal: Annotated[Principal, Depends(needs("admin", ADMINISTRATOR))],
) -> dict[str, Any]:
    return _change_role(request, principal, handle, body, grant=False)


def _change_role(
    request: Request, principal: Principal, handle: str, body: RoleChange, *, grant: bool
) -> dict[str, Any]:
    app = context(request).system.app
    person = app.person_by_handle(handle)
    changed = app.change_role(
        principal.person_id,
        person.id,
        body.role,
        grant=grant,
        reason=body.reason,
        command_id=command_id(request, principal),
    )
    return {"handle": person.handle, "roles": app.person(person.id).roles, "changed": changed}


ClientScope = Literal["read", "verify", "fetch:manifests"]
CLIENT_DEFAULT_SCOPES: tuple[ClientScope, ...] = ("verify", "fetch:manifests")


class NewClient(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    scopes: list[ClientScope] = Field(default_factory=lambda: list(CLIENT_DEFAULT_SCOPES), min_length=1)


@router.post("/clients", status_code=201, summary="register a platform's API client (administrators)")
def create_client(
    body: NewClient, request: Request, _: Annotated[Principal, Depends(needs("admin", ADMINISTRATOR))]
) -> dict[str, Any]:
    client_id, secret = context(request).accounts.create_client(body.name, check_scopes(body.scopes))
    return {"client_id": client_id, "client_secret": secret, "scopes": sorted(body.scopes)}


@router.post("/clients/{client_id}/revoke", status_code=204, summary="revoke a client and its tokens (administrators)")
def revoke_client(
    client_id: str, request: Request, _: Annotated[Principal, Depends(needs("admin", ADMINISTRATOR))]
) -> Response:
    context(request).accounts.revoke_client(client_id)
    return Response(status_code=204)
