"""Errors as `application/problem+json` (RFC 9457), with the command line's meanings.

Every error the service returns is a problem object: `type` (a URN naming the kind), `title`, `status`,
`detail` (one line, never a traceback) and `exit_code`, the status the command line would exit with for the
same error, so scripts can treat both alike. An unexpected failure is logged with its traceback under an
id that the problem carries, and the caller sees only that id.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from kernel.errors import (
    CommandConflict,
    InvalidInput,
    MissingDependency,
    NotFound,
    NotPermitted,
    ProvenanceError,
    RuleViolation,
    StageFailed,
)

log = logging.getLogger(__name__)

MEDIA_TYPE = "application/problem+json"


class ApiError(StarletteHTTPException):
    """An HTTP-level refusal (authentication, limits, content types) with its problem fields.

    An HTTP exception, so that one raised while FastAPI reads a body (a streamed body past its limit) reaches
    the caller as it is rather than as FastAPI's 400 for a body it could not parse.
    """

    def __init__(self, status: int, kind: str, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(status, detail, headers)
        self.status = status
        self.kind = kind
        self.detail = detail
        self.headers: dict[str, str] = headers or {}


def problem(status: int, kind: str, detail: str, *, exit_code: int | None = None, **extra: Any) -> JSONResponse:
    """A problem response, its `detail` on one line whatever it quotes (a request path the caller wrote); without
    an `exit_code` (an HTTP-level refusal) the status chooses it (`exit_code_of`)."""
    from http import HTTPStatus

    body: dict[str, Any] = {
        "type": f"urn:provenance:problem:{kind}",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": _one_line(detail),
        "exit_code": exit_code_of(status) if exit_code is None else exit_code,
    }
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE)


def exit_code_of(status: int) -> int:
    """The command line's exit status for an HTTP-level refusal: 3 for an unknown route or id, 4 for a refusal
    of who is calling (401, 403) or a conflict, 7 for a service that is busy or unavailable (429, 503: try again
    later), 6 for any other failure of the service, 2 for any other fault of the request (400, 405, 413, 415)."""
    if status == 404:
        return 3
    if status in (401, 403, 409):
        return 4
    if status in (429, 503):
        return 7
    return 6 if status >= 500 else 2


_STATUSES: tuple[tuple[type[ProvenanceError], int, str], ...] = (
    (InvalidInput, 400, "invalid-input"),
    (NotFound, 404, "not-found"),
    (NotPermitted, 403, "not-permitted"),
    (CommandConflict, 409, "command-conflict"),
    (RuleViolation, 409, "rule-violation"),
    (MissingDependency, 501, "missing-dependency"),
    (StageFailed, 502, "stage-failed"),
)
"""Domain errors by HTTP status, the more specific first (a `NotPermitted` is also a `RuleViolation`)."""


def status_of(exc: ProvenanceError) -> tuple[int, str]:
    """The HTTP status and problem kind of a domain error."""
    for kind, status, name in _STATUSES:
        if isinstance(exc, kind):
            return status, name
    return 500, "operation-failed"


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        response = problem(exc.status, exc.kind, exc.detail)
        response.headers.update(exc.headers)
        return response

    @app.exception_handler(ProvenanceError)
    async def domain_error(_: Request, exc: ProvenanceError) -> JSONResponse:
        status, kind = status_of(exc)
        return problem(status, kind, str(exc), exit_code=exc.exit_code)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"where": ".".join(str(p) for p in e.get("loc", ())), "message": str(e.get("msg", ""))}
            for e in exc.errors()
        ]
        first = errors[0] if errors else {"where": "", "message": "invalid request"}
        detail = f"{first['where']}: {first['message']}" if first["where"] else first["message"]
        return problem(422, "invalid-request", detail, exit_code=2, errors=errors[:20])

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "http-error")
        response = problem(exc.status_code, kind, str(exc.detail))
        response.headers.update(exc.headers or {})
        return response

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        from provenance.damage import is_damaged
        from provenance.kafka.errors import is_transient, storage_failure

        if is_damaged(exc) or storage_failure(exc) is not None:  # the server's disk or files: its operator's to fix
            incident = secrets.token_hex(6)
            log.error("storage failure %s", incident, exc_info=exc)
            detail = f"the service cannot store or read its data now (incident {incident}, in the server's log)"
            return problem(503, "storage-failure", detail, exit_code=6)
        if is_transient(exc):
            return problem(503, "unavailable", "a database cannot be reached or is busy; try again", exit_code=7)
        if isinstance(exc, ClientDisconnect):  # the caller left mid-body: nobody to answer, and nothing went wrong
            log.info("a client disconnected before its request's body was read")
            return problem(400, "client-disconnected", "the request's body ended early")
        incident = secrets.token_hex(6)
        log.error("internal error %s", incident, exc_info=exc)
        return problem(500, "internal-error", f"internal error (incident {incident}, in the server's log)", exit_code=1)


def _one_line(text: str) -> str:
    return " ".join(text.split())[:2000]
