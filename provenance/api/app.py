"""The ASGI application: the same `System` as the command line, behind authentication, limits and problems.

`create_app(system)` builds it; `provenance api` serves it with uvicorn. The OpenAPI document is at
`/openapi.json` and the interactive documentation at `/docs`; `/health` answers while the process runs and
`/ready` while its databases answer too.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from provenance.api.accounts import Accounts
from provenance.api.openapi import install_document
from provenance.api.problems import ApiError, install, problem
from provenance.api.security import RateLimiter, Uploads
from provenance.bootstrap import System
from provenance.domain.person import person_id_for
from provenance.reference_check import MAX_REFERENCE_BYTES

log = logging.getLogger(__name__)

JSON_LIMIT = 64 * 1024
"""The largest JSON (or form) body any endpoint takes."""

UPLOAD_TYPES = {
    "/cameos": ("image/png", "image/jpeg"),
    "/verify": ("video/mp4", "application/octet-stream"),
    "/matches/byContent": ("video/mp4", "application/octet-stream"),
}
"""Endpoints whose body is a file, and the media types they take (the body is the file itself)."""

FORM_PATHS = frozenset({"/auth/token"})
"""OAuth2's token endpoint takes a form, as RFC 6749 says."""

CONSOLE_FORMS = ("application/x-www-form-urlencoded", "multipart/form-data")

OVER_HTTP = "http:"
"""How the command ids of what this service records begin (`Idempotency-Key`s are `http:<caller>:<key>`)."""

QUEUE_RETRY_S = 30
"""How long the embedded gate thread waits out a failure of the infrastructure before it serves the render queue
again; also the `Retry-After` of a request refused because its person's places in the queue are taken."""


@dataclass
class ApiContext:
    system: System
    accounts: Accounts
    limiter: RateLimiter
    sign_in_limiter: RateLimiter
    credentials_limiter: RateLimiter
    """Password and client-secret checks from one address, whatever handle or client they name (each costs a
    hash, as slow for a made-up account as for a real one)."""
    uploads: Uploads = field(default_factory=Uploads)
    renders: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(max_workers=1, thread_name_prefix="api-render")
    )
    """The embedded mode's gate work (render, moderate, sign, publish), one video at a time, off the request."""
    _workers: Any = None
    _workers_lock: threading.Lock = field(default_factory=threading.Lock)
    _queue: Any = None
    _admitting: threading.Lock = field(default_factory=threading.Lock)
    """One generation request admitted at a time in this process, so that two cannot both take a person's last
    place in the render queue."""
    _stopping: threading.Event = field(default_factory=threading.Event)
    _wake_up: threading.Timer | None = None
    """The gate thread's next wake-up of its own (a lease to lapse, a failure to wait out), if one is due."""

    def reads(self) -> Any:
        """The read models, brought up to date first in the embedded mode."""
        self.system.catch_up()
        return self.system.reads

    @property
    def embedded(self) -> bool:
        """Whether this process takes videos through the gates itself (no broker: no workers elsewhere)."""
        return not self.system.settings.kafka_bootstrap

    def gate_workers(self) -> Any:
        """Every gate, built once (models load here). A missing signing identity is refused here: 503 to the
        caller, who can do nothing about it, and the reason (naming the server's files) in the server's log."""
        from provenance.credentials.errors import PkiError

        with self._workers_lock:
            if self._workers is None:
                try:
                    self._workers = self.system.gate_workers(render=True, moderate=True, sign=True)
                except PkiError as exc:
                    log.error("videos cannot be signed: %s", exc)
                    raise ApiError(503, "signing-unavailable", "this service cannot sign videos now") from exc
            return self._workers

    def render_queue(self) -> Any:
        """The requests waiting for a render, served fairly between creators (`provenance.render_queue`): this
        service adds each request it admits, and the embedded mode's gate thread serves it (in the distributed
        mode, the generator role, in the same database)."""
        from provenance.render_queue import RenderQueue

        with self._workers_lock:
            if self._queue is None:
                self._queue = RenderQueue(self.system.store.engine)
            return self._queue

    def request_video(self, creator: Any, prompt: str, **request: Any) -> Any:
        """Record a generation request and take it through the gates (in the embedded mode: without a signing
        identity it is refused before anything is recorded).

        Refused (429, nothing recorded) while the render queue holds `api_max_queued` of the creator's requests;
        a retry of one recorded before (its `Idempotency-Key`) is answered all the same.
        """
        from provenance.domain.ids import derived_id

        if self.embedded:
            self.gate_workers()
        if request.get("command_id") is None:  # marked as this service's, to take it up again after a restart
            request["command_id"] = f"{OVER_HTTP}{uuid.uuid4()}"
        queue, most = self.render_queue(), self.system.settings.api_max_queued
        with self._admitting:
            retry = self.system.app.exists(uuid.UUID(derived_id("video", request["command_id"])))
            if not retry and queue.queued_for(str(creator)) >= most:
                raise ApiError(
                    429,
                    "render-queue-full",
                    f"{most} of your videos are waiting for a render already; ask again when one of them is done",
                    {"Retry-After": str(QUEUE_RETRY_S)},
                )
            if not retry and queue.queued_for() >= self.system.settings.api_max_queue:
                raise ApiError(
                    503,
                    "render-queue-busy",
                    "the service has as many videos waiting for a render as it takes; ask again later",
                    {"Retry-After": str(QUEUE_RETRY_S)},
                )
            video_id = self.system.app.request_generation(creator, prompt, **request)
            self._take_up(video_id)
        return video_id

    def resume(self) -> None:
        """Take up again the videos requested over HTTP that a stop left on their way through the gates (an
        accepted request is answered 202 before it is rendered); the gates are idempotent, so none runs twice."""
        if not self.embedded:
            return
        unfinished = self.reads().unfinished_requests(OVER_HTTP)
        if not unfinished and not self.render_queue().queued_for():
            return  # the models load with the first request
        try:
            self.gate_workers()
        except ApiError as exc:  # no signing identity: they wait for one, and the log says why
            log.error("%d videos requested over HTTP wait for the gates: %s", len(unfinished), exc.detail)
            return
        for video_id in unfinished:
            self._take_up(uuid.UUID(video_id))
        self._wake()  # what a stop left in the queue, finished or not

    def _take_up(self, video_id: Any) -> None:
        """Queue a video waiting for its render, or, in the embedded mode, any video still on its way through the
        gates (whose gate thread takes a queued video through all of them, counting each time one took the
        service down), and wake the gate thread."""
        from provenance.domain.video import IN_FLIGHT, REQUESTED
        from provenance.log import stream_log

        state = self.system.app.video(video_id).state
        if state == REQUESTED or (self.embedded and state in IN_FLIGHT):
            self.render_queue().add(stream_log(self.system.app, video_id, "video")[0])  # its GenerationRequested
            self._wake()

    def _wake(self) -> None:
        """Have the gate thread serve the render queue (embedded mode), unless the service is stopping."""
        if self.embedded and not self._stopping.is_set():
            with contextlib.suppress(RuntimeError):  # the executor shut down meanwhile
                self.renders.submit(self._serve_queue)

    def _wake_in(self, seconds: float) -> None:
        """Wake the gate thread after a while, in place of any wake-up of its own already due."""
        with self._workers_lock:
            if self._wake_up is not None:
                self._wake_up.cancel()
            if self._stopping.is_set():
                return
            self._wake_up = threading.Timer(seconds, self._wake)
            self._wake_up.daemon = True
            self._wake_up.start()

    def _serve_queue(self) -> None:
        """Take the videos in the render queue through the gates, the fairest first, until it holds none that
        nobody holds or the service stops (each request admitted wakes this; a wake-up that finds nothing to
        take does nothing).

        A request another process holds (or held, before it stopped) is taken once its lease lapses, and one that
        took the process down `max_attempts` times is recorded as a render failure. A failure of the
        infrastructure gives the request back, to be tried again in `QUEUE_RETRY_S`; a bug in a gate takes it out
        of the queue, the video left where it stopped (taken up again when the service next starts), and the rest
        is served a second later.
        """
        from provenance.gates import is_infrastructure
        from provenance.render_queue import give_up_render, serve_next

        try:
            queue = self.render_queue()
            workers = self.gate_workers()

            def drive(claim: Any) -> None:
                self.system.drive(uuid.UUID(claim.video_id), workers)

            def give_up(claim: Any) -> None:
                give_up_render(self.system.app, queue, claim)

            while not self._stopping.is_set() and serve_next(queue, drive, give_up):
                pass
            lapses = queue.next_lapse()
        except ApiError:  # no signing identity (the log says so): the queue waits for one
            return
        except Exception as exc:  # a bug goes on after a second: one that repeats (in the queue itself) never spins
            retry = QUEUE_RETRY_S if is_infrastructure(exc) else 1
            log.exception("the gate thread stopped serving the render queue; it goes on in %d s", retry)
            self._wake_in(retry)
            return
        if lapses is not None:
            self._wake_in(max(0.0, lapses - queue.clock()) + 0.5)

    def decide_review(self, video_id: Any, actor: Any, verdict: str, statement: str, **options: Any) -> None:
        """A person's decision on a held video; an allowed one goes on to signing and publishing (a service that
        cannot sign refuses it before anything is recorded), a blocked one stops there."""
        if verdict == "allow" and self.embedded:
            self.gate_workers()
        self.system.app.decide_review(video_id, actor, verdict, statement, **options)
        if verdict == "allow":
            self.drive(video_id)

    def drive(self, video_id: Any) -> None:
        """Take a video through the gates in the background (embedded mode); failures are recorded by the gates."""
        if not self.embedded:
            return
        workers = self.gate_workers()

        def run() -> None:
            try:
                self.system.drive(video_id, workers)
            except Exception:
                log.exception("driving video %s through the gates failed; it stays where it stopped", video_id)

        self.renders.submit(run)

    def close(self) -> None:
        """Stop: the video in the gates is finished, the rest of the queue left for the next start."""
        self._stopping.set()
        self._wake_in(0)  # cancels a wake-up due
        self.renders.shutdown(wait=True, cancel_futures=True)
        self.accounts.close()


def context(request: Request) -> ApiContext:
    ctx: ApiContext = request.app.state.ctx
    return ctx


def create_app(system: System, accounts: Accounts | None = None) -> FastAPI:
    from provenance.api.routes import access, credentials, people, reading, videos
    from provenance.console import pages

    settings = system.settings
    settings.home.mkdir(parents=True, exist_ok=True)
    app = FastAPI(
        title="provenance",
        version="1",
        summary="Provenance, consent and moderation of AI-generated video; the C2PA Soft Binding Resolution API.",
    )
    app.state.ctx = ApiContext(
        system=system,
        accounts=accounts or Accounts(settings.keys_database),
        limiter=RateLimiter(settings.api_rate, 2 * settings.api_rate),
        sign_in_limiter=RateLimiter(5 / 60, 5),
        credentials_limiter=RateLimiter(30 / 60, 10),
    )
    install(app)
    modules = (access, people, videos, reading, credentials)
    for module in modules:
        app.include_router(module.router)
    install_document(app, [route for module in modules for route in module.router.routes], UPLOAD_TYPES)
    app.include_router(pages.router)
    pages.install(app)

    @app.get("/health", tags=["operations"], summary="the process is up")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready", tags=["operations"], summary="the process and its databases answer")
    def ready() -> JSONResponse:
        import sqlalchemy as sa

        try:
            with system.store.engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
            with app.state.ctx.accounts.engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
            system.app.exists(person_id_for("readiness-probe"))
        except Exception as exc:
            return problem(503, "not-ready", f"a database does not answer: {type(exc).__name__}")
        return JSONResponse({"status": "ready"})

    if settings.api_cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.api_cors_origins),
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "X-CSRF-Token"],
        )
    app.add_middleware(BodyLimits, max_upload=settings.api_max_upload)

    @app.middleware("http")
    async def security_headers(request: Request, call_next: Callable[[Request], Awaitable[Any]]) -> Any:
        response = await call_next(request)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Cache-Control", "no-store")
        if request.url.path.startswith("/console"):
            response.headers.setdefault("Content-Security-Policy", CONSOLE_CSP)
        return response

    app.router.add_event_handler("startup", app.state.ctx.resume)
    app.router.add_event_handler("shutdown", app.state.ctx.close)
    return app


CONSOLE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; media-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
"""The console's pages load only its own script, style sheet and media: were any user text ever to escape the
templates' escaping, no script of it would run. (`/docs` is left alone: its page loads from a CDN.)"""

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class BodyLimits:
    """Refuses bodies over their endpoint's limit (413, before reading them when the length is declared, and
    as soon as a streamed body passes it) and bodies of the wrong media type (415)."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], max_upload: int) -> None:
        self.app = app
        self.max_upload = max_upload

    def expected(self, path: str, signed_in: bool = True) -> tuple[tuple[str, ...], int]:
        """The media types an endpoint's body may have, and its most bytes. The console's two uploads take a file
        only from a caller with a live session: its forms are read before the page knows who posted them."""
        if path.startswith("/console/"):  # the console's forms; its two uploads are multipart with a few fields
            uploads = {"/console/cameos": MAX_REFERENCE_BYTES, "/console/verify": self.max_upload}
            return CONSOLE_FORMS, (uploads.get(path, 0) if signed_in else 0) + JSON_LIMIT
        if path in UPLOAD_TYPES:
            return UPLOAD_TYPES[path], MAX_REFERENCE_BYTES if path == "/cameos" else self.max_upload
        if path in FORM_PATHS:
            return ("application/x-www-form-urlencoded",), JSON_LIMIT
        return ("application/json",), JSON_LIMIT

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS", "DELETE"):
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        media_type = headers.get("content-type", "").split(";")[0].strip().lower()
        allowed, limit = self.expected(path, await _has_session(scope, headers) if path in CONSOLE_UPLOADS else True)
        declared = headers.get("content-length")
        has_body = (declared is not None and declared != "0") or "transfer-encoding" in headers
        if has_body and media_type not in allowed:
            await _refuse(
                send,
                415,
                "unsupported-media-type",
                f"{path} takes {' or '.join(allowed)}, not {media_type or 'no type'}",
            )
            return
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await _refuse(send, 413, "too-large", f"{path} takes at most {limit:,} bytes")
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise ApiError(413, "too-large", f"{path} takes at most {limit:,} bytes")
            return message

        await self.app(scope, counted, send)


CONSOLE_UPLOADS = frozenset({"/console/cameos", "/console/verify"})


async def _has_session(scope: Scope, headers: dict[str, str]) -> bool:
    """Whether the request carries the session cookie of a live session."""
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import cookie_parser

    from provenance.api.security import SESSION_COOKIE

    secret = cookie_parser(headers.get("cookie", "")).get(SESSION_COOKIE)
    if not secret:
        return False
    return await run_in_threadpool(scope["app"].state.ctx.accounts.lookup, secret) is not None


async def _refuse(send: Send, status: int, kind: str, detail: str) -> None:
    response = problem(status, kind, detail)
    await send({"type": "http.response.start", "status": status, "headers": response.raw_headers})
    await send({"type": "http.response.body", "body": response.body})
