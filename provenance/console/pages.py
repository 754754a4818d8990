"""The console's pages: sign-in, the feed, a video, the review queue, my cameos, verify, audit, statements.

Every page is rendered on the server from the same application and read models as the API, for the signed-in
person (the session cookie); every form carries the session's CSRF token and is checked before anything is
done. Access follows the API's rules: the same roles open the same things.
"""

from __future__ import annotations

from collections import deque
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlsplit
from uuid import UUID

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from kernel.errors import InvalidInput, NotFound, ProvenanceError
from kernel.text import BIDI_CONTROLS, written_out
from provenance.api.accounts import MAX_SECRET
from provenance.api.app import context
from provenance.api.problems import ApiError, status_of
from provenance.api.routes.videos import file_for
from provenance.api.security import (
    ADMINISTRATOR,
    AUDITOR,
    MEMBER,
    ROLES,
    SESSION_COOKIE,
    TRUST_AND_SAFETY,
    Access,
    Principal,
    authenticate,
    set_session_cookie,
    sign_in_person,
)
from provenance.console.statements import block_statement, takedown_statement

router = APIRouter(prefix="/console", include_in_schema=False)
templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))

_BIDI_CONTROLS = written_out(BIDI_CONTROLS)


def _shown(value: Any) -> Any:
    """Every value a page shows, bidirectional overrides and isolates written out (as the command line does):
    a prompt or a statement of reasons cannot reorder what the page around it says."""
    return value.translate(_BIDI_CONTROLS) if isinstance(value, str) else value


templates.env.finalize = _shown

STAGES = ("requested", "rendered", "moderated", "signed", "published")


class NeedsSignIn(Exception):
    """Raised by a page for a caller without a session: they are sent to the sign-in page."""

    def __init__(self, next_path: str) -> None:
        self.next_path = next_path


def viewer(request: Request, scope: str, *roles: str, csrf: str | None = None) -> Principal:
    """The signed-in person, from the session cookie alone (and the form's CSRF token for a form), if the API's
    `Access(scope, roles)` lets them in: the console acts with the same rights as `needs(scope, *roles)`."""
    if SESSION_COOKIE not in request.cookies:
        raise NeedsSignIn(_back_after_sign_in(request))
    try:
        principal = authenticate(request, csrf, session_only=True)
    except ApiError as exc:
        if exc.status == 401:
            raise NeedsSignIn(_back_after_sign_in(request)) from exc
        raise
    if principal.kind != "person":
        raise ApiError(403, "forbidden", "the console is for people")
    return Access(scope, frozenset(roles) if roles else None).check(principal)


def page(request: Request, template: str, principal: Principal | None, status: int = 200, **values: Any) -> Response:
    values |= {
        "me": principal,
        "csrf": principal.token.csrf if principal else "",
        "is_ts": bool(principal and TRUST_AND_SAFETY in principal.roles),
        "is_auditor": bool(principal and AUDITOR in principal.roles),
        "is_member": bool(principal and MEMBER in principal.roles),
    }
    return templates.TemplateResponse(request, template, values, status_code=status)


async def form(request: Request) -> dict[str, Any]:
    """The posted form (parsed on the event loop; the handler that gets it runs in a worker thread)."""
    return dict((await request.form()).items())


Posted = Annotated[dict[str, Any], Depends(form)]


def back(path: str) -> RedirectResponse:
    return RedirectResponse(path, status_code=303)


def handles(ctx: Any, ids: set[str]) -> dict[str, str]:
    return dict(ctx.system.reads.handles({i for i in ids if i}))


# --- signing in ---------------------------------------------------------------------------------------------


@router.get("/sign-in")
def sign_in_page(request: Request, next: str = "/console") -> Response:
    return page(request, "sign_in.html", None, next=_local(next), error=None)


@router.post("/sign-in")
def sign_in(request: Request, data: Posted) -> Response:
    if not _from_this_site(request):  # a cross-site form would sign the browser in as someone else
        raise ApiError(403, "cross-site", "sign in from this site's own sign-in page")
    handle, password = str(data.get("handle", ""))[:64], str(data.get("password", ""))[:MAX_SECRET]
    next_path = _local(str(data.get("next", "/console")))
    issued = sign_in_person(request, handle, password, session=True)
    if issued is None:
        return page(request, "sign_in.html", None, 401, next=next_path, error="Wrong handle or password.")
    response = back(next_path)
    set_session_cookie(request, response, issued[0])
    return response


@router.post("/sign-out")
def sign_out(request: Request, data: Posted) -> Response:
    principal = viewer(request, "read", csrf=data.get("csrf"))
    context(request).accounts.revoke(principal.token.token_id)
    response = back("/console/sign-in")
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


def _back_after_sign_in(request: Request) -> str:
    """The page to come back to after signing in: this one, or for a form the page it was posted from (a form's
    action answers no GET)."""
    if request.method == "GET":
        return request.url.path
    return _local(urlsplit(request.headers.get("referer", "")).path or "/console")


def _from_this_site(request: Request) -> bool:
    """Whether the browser says the request comes from this site's own pages (or the user typed it)."""
    fetched_from = request.headers.get("sec-fetch-site")
    if fetched_from is not None:
        return fetched_from in ("same-origin", "none")
    origin = request.headers.get("origin")
    return origin is None or origin == f"{request.url.scheme}://{request.url.netloc}"


def _local(path: str) -> str:
    """Only a path of this site to go back to after signing in (no open redirect)."""
    return path if path.startswith("/console") and "//" not in path and "\\" not in path else "/console"


# --- the feed and a video -----------------------------------------------------------------------------------


@router.get("")
def feed(request: Request, cursor: str | None = None) -> Response:
    principal = viewer(request, "read")
    ctx = context(request)
    found = ctx.reads().feed(limit=10, cursor=cursor[:200] if cursor else None)
    items = found["items"]
    names = handles(ctx, {i["creator_id"] for i in items})
    remixes = ctx.system.reads.remix_counts([i["video_id"] for i in items])
    for item in items:
        item["creator"] = names.get(item["creator_id"], item["creator_id"])
        item["remixes"] = remixes.get(item["video_id"], 0)
    return page(request, "feed.html", principal, items=items, next_cursor=found["next_cursor"])


@router.post("/videos")
def request_video(request: Request, data: Posted) -> Response:
    principal = viewer(request, "write", MEMBER, csrf=data.get("csrf"))
    size = {"duration_s": 2.0, "fps": 12, "width": 288, "height": 512}
    cameos = [c.strip() for c in str(data.get("cameos", "")).split(",") if c.strip()]
    prompt = str(data.get("prompt", ""))[:1000]
    video_id = context(request).request_video(principal.person_id, prompt, parameters=size, cameo_ids=cameos)
    return back(f"/console/videos/{video_id}")


@router.get("/videos/{video_id}")
def video(request: Request, video_id: UUID) -> Response:
    principal = viewer(request, "read")
    ctx = context(request)
    current = ctx.system.app.video(video_id)
    reads = ctx.reads()
    try:
        trace = reads.trace(str(video_id))
    except NotFound:
        trace = None
    lineage = _lineage(reads, str(video_id))
    names = handles(ctx, {current.creator_id} | {c.get("issued_by", "") for c in (trace or {}).get("takedowns", [])})
    in_flight = current.state in STAGES[:-1] and not current.block_reasons
    return page(
        request,
        "video.html",
        principal,
        video=current,
        trace=trace,
        lineage=lineage,
        names=names,
        in_flight=in_flight,
        stage=STAGES.index(current.state) if current.state in STAGES else len(STAGES),
        stages=STAGES,
        playable=file_for(current, principal) is not None,
        is_creator=current.creator_id == principal.subject,
        block=block_statement(reads.video(str(video_id)), reads.block_origin(str(video_id))) if trace else None,
    )


LINEAGE_SHOWN = 200
"""Remixes a video's page shows below it at most, nearest first: each costs a query, and a popular video's tree
grows with every remix of a remix."""


def _lineage(reads: Any, video_id: str) -> dict[str, Any]:
    """The remixes above (ancestors, oldest first) and below (a tree, breadth first, `LINEAGE_SHOWN` at most, six
    levels deep) a video; `more_below` says that the tree goes on past what is shown."""
    root: dict[str, Any] = {"video_id": video_id, "children": []}
    waiting, shown, more = deque([(root, 0)]), 0, False
    while waiting and not more:
        node, depth = waiting.popleft()
        for child in reads.children(node["video_id"]) if depth < 6 else []:
            if shown == LINEAGE_SHOWN:
                more = True
                break
            entry: dict[str, Any] = {"video_id": child, "children": []}
            node["children"].append(entry)
            waiting.append((entry, depth + 1))
            shown += 1
    return {"ancestors": list(reversed(reads.ancestors(video_id))), "below": root["children"], "more_below": more}


@router.post("/videos/{video_id}/takedowns")
def take_down(request: Request, video_id: UUID, data: Posted) -> Response:
    principal = viewer(request, "write", MEMBER, TRUST_AND_SAFETY, csrf=data.get("csrf"))
    ctx = context(request)
    ctx.system.app.take_down(
        video_id,
        principal.person_id,
        reason_code=str(data.get("reason_code", ""))[:100],
        statement_of_reasons=str(data.get("statement", ""))[:5000],
        source="own_initiative" if TRUST_AND_SAFETY in principal.roles else None,
    )
    ctx.reads()
    return back(_local(str(data["back"])) if data.get("back") else f"/console/videos/{video_id}")


@router.post("/videos/{video_id}/takedowns/{case_id}/appeal")
def appeal(request: Request, video_id: UUID, case_id: str, data: Posted) -> Response:
    principal = viewer(request, "write", MEMBER, csrf=data.get("csrf"))
    ctx = context(request)
    ctx.system.app.appeal(video_id, case_id[:100], principal.person_id, str(data.get("grounds", ""))[:5000])
    ctx.reads()
    return back(f"/console/videos/{video_id}")


@router.post("/videos/{video_id}/takedowns/{case_id}/reinstate")
def reinstate(request: Request, video_id: UUID, case_id: str, data: Posted) -> Response:
    principal = viewer(request, "write", TRUST_AND_SAFETY, csrf=data.get("csrf"))
    ctx = context(request)
    ctx.system.app.reinstate(video_id, case_id[:100], principal.person_id, str(data.get("decision", ""))[:5000])
    ctx.reads()
    return back("/console/review")


# --- review ------------------------------------------------------------------------------------------------


@router.get("/review")
def review(request: Request) -> Response:
    principal = viewer(request, "read", TRUST_AND_SAFETY, AUDITOR)
    ctx = context(request)
    reads = ctx.reads()
    held = reads.awaiting_review()
    for item in held:
        moderation = reads.video(item["video_id"])["moderation"] or {}
        item["flagged"] = [
            {"classifier": c["name"], **s}
            for c in moderation.get("classifiers", [])
            if c.get("outcome") != "allow"
            for s in c.get("segments", [])
        ]
    appeals = reads.open_appeals()
    names = handles(ctx, {i["creator_id"] for i in held})
    return page(request, "review.html", principal, held=held, appeals=appeals, names=names)


@router.post("/review/{video_id}")
def decide(request: Request, video_id: UUID, data: Posted) -> Response:
    principal = viewer(request, "write", TRUST_AND_SAFETY, csrf=data.get("csrf"))
    verdict, statement = str(data.get("verdict", "")), str(data.get("statement", ""))[:5000]
    context(request).decide_review(video_id, principal.person_id, verdict, statement)
    return back(f"/console/videos/{video_id}")


# --- my cameos ----------------------------------------------------------------------------------------------


@router.get("/cameos")
def cameos(request: Request) -> Response:
    principal = viewer(request, "read", MEMBER)
    ctx = context(request)
    reads = ctx.reads()
    mine = reads.cameos_owned_by(principal.subject)
    for cameo in mine:
        cameo["grants"] = reads.grants(cameo["cameo_id"])
        cameo["videos"] = reads.videos_with_cameo(cameo["cameo_id"])
        for grant in cameo["grants"]:
            grant["grantee_handles"] = sorted(handles(ctx, set(grant.get("grantees") or [])).values())
    return page(request, "cameos.html", principal, cameos=mine)


@router.post("/cameos")
def register_cameo(request: Request, data: Posted) -> Response:
    principal = viewer(request, "write", MEMBER, csrf=data.get("csrf"))
    upload = data.get("file")
    if upload is None or not hasattr(upload, "read"):
        raise InvalidInput("choose an image file of your face")
    image = upload.file.read()
    ctx = context(request)
    cameo_id = ctx.system.app.register_cameo(principal.person_id, image)
    ctx.system.verify_cameo(cameo_id)
    return back("/console/cameos")


@router.post("/cameos/{cameo_id}/grants")
def grant(request: Request, cameo_id: UUID, data: Posted) -> Response:
    from provenance.cli.handlers.common import parse_expiry

    principal = viewer(request, "write", MEMBER, csrf=data.get("csrf"))
    ctx = context(request)
    app = ctx.system.app
    to = [h.strip() for h in str(data.get("to", "")).split(",") if h.strip()]
    scope = [s for s in ("generate", "remix") if data.get(f"scope_{s}")]
    if not scope:  # never the widest consent for a form left blank
        raise InvalidInput("choose what the consent covers: new videos, remixes or both")
    app.grant_consent(
        principal.person_id,
        cameo_id,
        str(data.get("audience", "")),
        grantees=[app.person_by_handle(h).id for h in to[:1000]],
        scope=scope,
        expires_at=parse_expiry(str(data.get("expires", "")).strip() or None),
    )
    ctx.reads()
    return back("/console/cameos")


@router.post("/cameos/{cameo_id}/grants/{grant_id}/revoke")
def revoke(request: Request, cameo_id: UUID, grant_id: str, data: Posted) -> Response:
    principal = viewer(request, "write", MEMBER, csrf=data.get("csrf"))
    ctx = context(request)
    ctx.system.app.revoke_consent(principal.person_id, cameo_id, grant_id[:100], str(data.get("reason", ""))[:2000])
    ctx.reads()
    return back("/console/cameos")


@router.post("/cameos/{cameo_id}/erase")
def erase(request: Request, cameo_id: UUID, data: Posted) -> Response:
    principal = viewer(request, "write", MEMBER, csrf=data.get("csrf"))
    if data.get("confirm") != "erase":
        raise InvalidInput('to erase the likeness, type "erase" in the confirmation box')
    ctx = context(request)
    ctx.system.app.erase_cameo(principal.person_id, cameo_id, str(data.get("reason", ""))[:2000])
    ctx.reads()
    return back("/console/cameos")


# --- verify, audit, statements --------------------------------------------------------------------------------


@router.get("/verify")
def verify_page(request: Request) -> Response:
    return page(request, "verify.html", viewer(request, "verify", *ROLES), report=None)


@router.post("/verify")
def verify(request: Request, data: Posted) -> Response:
    import shutil
    import tempfile

    from provenance.credentials.verify import verify_file
    from provenance.verification import ReadModelStatus

    principal = viewer(request, "verify", *ROLES, csrf=data.get("csrf"))
    upload = data.get("file")
    if upload is None or not hasattr(upload, "read"):
        raise InvalidInput("choose a video file to verify")
    ctx = context(request)
    ctx.system.work_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=ctx.system.work_dir, prefix="upload-", suffix=".mp4") as out:
        shutil.copyfileobj(upload.file, out, 1 << 20)
        out.flush()
        report = verify_file(Path(out.name), ctx.system.trust(), ReadModelStatus(ctx.reads()))
    shown = report.to_json_as(str(getattr(upload, "filename", None) or "the uploaded file")[:200])
    return page(request, "verify.html", principal, report=shown)


@router.get("/audit")
def audit_search(request: Request, id: str | None = None) -> Response:
    principal = viewer(request, "read", AUDITOR, TRUST_AND_SAFETY, ADMINISTRATOR)
    if id:
        return back(f"/console/audit/{quote(id.strip()[:100])}")
    return page(request, "audit.html", principal, trail=None, stream_id="", filter="")


@router.get("/audit/{stream_id}")
def audit(request: Request, stream_id: str, filter: str = "") -> Response:
    principal = viewer(request, "read", AUDITOR, TRUST_AND_SAFETY, ADMINISTRATOR)
    trail = context(request).reads().audit_trail(stream_id[:100])
    wanted = filter.strip().lower()[:100]
    if wanted:
        trail = [e for e in trail if wanted in " ".join(str(v) for v in e.values()).lower()]
    return page(request, "audit.html", principal, trail=trail, stream_id=stream_id, filter=filter[:100])


@router.get("/videos/{video_id}/statements/{case_id}")
def statement(request: Request, video_id: UUID, case_id: str, format: str = "html") -> Response:
    principal = viewer(request, "read")
    reads = context(request).reads()
    video = reads.video(str(video_id))
    if case_id == "block":
        found = block_statement(video, reads.block_origin(str(video_id)))
    else:
        cases = [c for c in reads.takedowns(str(video_id)) if c["case_id"] == case_id]
        found = takedown_statement(cases[0], video) if cases else None
    if found is None:
        raise NotFound(f"no statement of reasons {case_id} for video {video_id}")
    if format == "json":
        headers = {"Content-Disposition": f'attachment; filename="statement-{video_id}-{case_id[:40]}.json"'}
        return JSONResponse(found, headers=headers)
    return page(request, "statement.html", principal, statement=found, video_id=str(video_id), case_id=case_id)


# --- errors -------------------------------------------------------------------------------------------------


def install(app: Any) -> None:
    """Console pages answer errors with a page, not a problem document; no session sends one to sign in."""
    from fastapi.staticfiles import StaticFiles

    app.mount("/console/static", StaticFiles(directory=str(Path(__file__).parent / "static")), name="console-static")
    api_error = app.exception_handlers[ApiError]
    domain_error = app.exception_handlers[ProvenanceError]

    def on_console(request: Request) -> bool:
        return request.url.path.startswith("/console")

    @app.exception_handler(NeedsSignIn)
    async def needs_sign_in(request: Request, exc: NeedsSignIn) -> Response:
        return back(f"/console/sign-in?next={quote(exc.next_path)}")

    @app.exception_handler(ApiError)
    async def console_api_error(request: Request, exc: ApiError) -> Response:
        if not on_console(request):
            return await api_error(request, exc)
        response = _error_page(request, exc.status, exc.detail)
        response.headers.update(exc.headers)  # Retry-After, WWW-Authenticate
        return response

    @app.exception_handler(ProvenanceError)
    async def console_domain_error(request: Request, exc: ProvenanceError) -> Response:
        if not on_console(request):
            return await domain_error(request, exc)
        status, _ = status_of(exc)
        return _error_page(request, status, str(exc))


def _error_page(request: Request, status: int, detail: str) -> HTMLResponse:
    response = templates.TemplateResponse(
        request, "error.html", {"status": status, "detail": detail, "me": None, "csrf": ""}, status_code=status
    )
    assert isinstance(response, HTMLResponse)
    return response
