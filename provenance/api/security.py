"""Authentication and authorisation: who is calling, and whether the endpoint lets them.

A caller presents a bearer token (`Authorization: Bearer ...`), or a browser its session cookie; a cookie
alone never authorises an unsafe request (it also needs the session's `X-CSRF-Token`). A person's roles are
read from their `Person` stream at every call, so a revoked role takes effect at once; a platform client has
the `platform` role and the scopes it was created with. Each endpoint declares its `Access`: the token scope
it needs and which roles may call it. The actor of every command is the principal: no endpoint takes one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING
from uuid import UUID

from fastapi import Request, Response

from kernel.errors import NotFound

if TYPE_CHECKING:
    from provenance.api.app import ApiContext
from provenance.api.accounts import SCOPES, Kind, Token
from provenance.api.problems import ApiError

SESSION_COOKIE = "provenance_session"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

MEMBER, TRUST_AND_SAFETY, AUDITOR, ADMINISTRATOR, PLATFORM = (
    "member",
    "trust_and_safety",
    "auditor",
    "administrator",
    "platform",
)
ROLES = (MEMBER, TRUST_AND_SAFETY, AUDITOR, ADMINISTRATOR, PLATFORM)


def person_scopes(roles: frozenset[str]) -> frozenset[str]:
    """What a person's unrestricted token may do: everything but administration, which needs the role."""
    return frozenset(s for s in SCOPES if s != "admin" or ADMINISTRATOR in roles)


@dataclass(frozen=True)
class Principal:
    kind: Kind
    subject: str
    name: str
    roles: frozenset[str]
    scopes: frozenset[str]
    token: Token

    @property
    def person_id(self) -> UUID:
        if self.kind != "person":
            raise ApiError(403, "forbidden", "this endpoint acts for a person; a client token cannot use it")
        return UUID(self.subject)


@dataclass(frozen=True)
class Access:
    """What an endpoint needs: a token scope, and one of `roles` (None: any person)."""

    scope: str
    roles: frozenset[str] | None = None

    def allows(self, principal: Principal) -> bool:
        if self.scope not in principal.scopes:
            return False
        if self.roles is None:
            return principal.kind == "person"
        return bool(self.roles & principal.roles)

    def check(self, principal: Principal) -> Principal:
        """The principal, or 403 saying what this needs."""
        if not self.allows(principal):
            who = f"one of the roles {', '.join(sorted(self.roles))}" if self.roles else "a signed-in person"
            raise ApiError(403, "forbidden", f"this needs {who}, with a token of scope {self.scope!r}")
        return principal


class RateLimiter:
    """Token buckets per key (a token id, or the caller's address when anonymous), in this process."""

    def __init__(self, rate_per_s: float, burst: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate_per_s
        self.burst = burst
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """0 when allowed; otherwise the seconds to wait before the next request is."""
        now = self.clock()
        with self._lock:
            if len(self._buckets) > 100_000:  # forget the idle ones rather than grow without bound
                self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < 60}
            tokens, at = self._buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - at) * self.rate)
            if tokens < 1:
                self._buckets[key] = (tokens, now)
                return (1 - tokens) / self.rate
            self._buckets[key] = (tokens - 1, now)
            return 0.0


UPLOADS_PER_CALLER = 2
"""Files one caller (a person or a platform's client) may be sending at once."""
UPLOADS_AT_ONCE = 8
"""Files the service receives at once, everybody's together: each may be `PROVENANCE_API_MAX_UPLOAD` bytes on the
data directory's disk until it is verified."""


class Uploads:
    """The files being received, by caller, so that no one caller, nor everybody together, fills the disk."""

    def __init__(self) -> None:
        self._by_caller: dict[str, int] = {}
        self._lock = threading.Lock()

    @contextmanager
    def receiving(self, caller: str) -> Iterator[None]:
        with self._lock:
            if self._by_caller.get(caller, 0) >= UPLOADS_PER_CALLER:
                raise ApiError(
                    429,
                    "too-many-uploads",
                    f"you are sending {UPLOADS_PER_CALLER} files already; send this one when one of them is done",
                    {"Retry-After": "5"},
                )
            if sum(self._by_caller.values()) >= UPLOADS_AT_ONCE:
                raise ApiError(
                    503, "uploads-busy", "the service is receiving as many files as it takes", {"Retry-After": "5"}
                )
            self._by_caller[caller] = self._by_caller.get(caller, 0) + 1
        try:
            yield
        finally:
            with self._lock:
                left = self._by_caller.pop(caller) - 1
                if left:
                    self._by_caller[caller] = left


def limit(limiter: RateLimiter, key: str) -> None:
    wait = limiter.take(key)
    if wait:
        raise ApiError(
            429, "rate-limited", f"too many requests; retry in {wait:.1f} s", {"Retry-After": str(int(wait) + 1)}
        )


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def client_network(request: Request) -> str:
    """The network the caller's address belongs to, as one party usually holds it: an IPv4 /24, an IPv6 /64 (of
    which one host is given billions of addresses); any other address as it is."""
    import ipaddress

    address = client_address(request)
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped is not None:
        parsed = parsed.ipv4_mapped
    prefix = 24 if parsed.version == 4 else 64
    return str(ipaddress.ip_network(f"{parsed}/{prefix}", strict=False))


SIGN_IN_TTL_S = 12 * 3600


def sign_in_person(request: Request, handle: str, password: str, *, session: bool) -> tuple[str, Token] | None:
    """A new token for a person whose password this is (tries throttled per address and handle); None when
    the handle or password is wrong. A browser session also gets its cookie through `set_session_cookie`."""
    from provenance.api.app import context
    from provenance.domain.person import handle_skeleton, person_id_for

    ctx = context(request)
    limit(ctx.credentials_limiter, f"credentials:{client_address(request)}")
    # Keyed as the account is found (every spelling of one handle names one person): not per spelling.
    limit(ctx.sign_in_limiter, f"sign-in:{client_address(request)}:{handle_skeleton(handle)}")
    if not handle.strip():
        return None
    person_id = str(person_id_for(handle))
    if not ctx.accounts.check_password(person_id, password):
        return None
    roles = frozenset(ctx.system.app.person(person_id).roles)
    return ctx.accounts.issue("person", person_id, person_scopes(roles), SIGN_IN_TTL_S, session=session)


def set_session_cookie(request: Request, response: Response, secret: str) -> None:
    secure = request.url.scheme == "https"
    response.set_cookie(
        SESSION_COOKIE, secret, max_age=SIGN_IN_TTL_S, httponly=True, samesite="strict", secure=secure, path="/"
    )


def authenticate(request: Request, csrf: str | None = None, *, session_only: bool = False) -> Principal:
    """The caller, or 401 (with `WWW-Authenticate`) for no, an unknown, an expired or a revoked token.

    A browser's unsafe request with the session cookie must carry the session's CSRF token: in the
    `X-CSRF-Token` header, or (a console form) as `csrf`. `session_only` (the console) takes the caller from
    the session cookie alone: an `Authorization` header there would act without the session's CSRF token.
    """
    from provenance.api.app import context

    ctx = context(request)
    header = "" if session_only else request.headers.get("authorization", "")
    token: Token | None = None
    if header:
        scheme, _, secret = header.partition(" ")
        if scheme.lower() != "bearer" or not secret.strip():
            raise _unauthorized("use `Authorization: Bearer <token>`")
        token = ctx.accounts.lookup(secret.strip())
    elif SESSION_COOKIE in request.cookies:
        token = ctx.accounts.lookup(request.cookies[SESSION_COOKIE])
        if token is not None and not token.session:
            token = None
        presented = request.headers.get(CSRF_HEADER) or csrf
        if token is not None and request.method not in SAFE_METHODS and presented != token.csrf:
            raise ApiError(403, "csrf", f"a signed-in browser's {request.method} needs the session's {CSRF_HEADER}")
    else:
        raise _anonymous(ctx, request, "sign in, or send a bearer token")
    if token is None:
        raise _anonymous(ctx, request, "the token is unknown, expired or revoked")
    principal = _principal(ctx, token)
    limit(ctx.limiter, f"token:{token.token_id}")
    return principal


def _principal(ctx: ApiContext, token: Token) -> Principal:
    if token.kind == "client":
        client = ctx.accounts.client(token.subject)
        if client is None:
            raise _unauthorized("the client was revoked")
        return Principal(
            "client", client.client_id, client.name, frozenset({PLATFORM}), token.scopes & client.scopes, token
        )
    try:
        person = ctx.system.app.person(UUID(token.subject))
    except NotFound:
        raise _unauthorized("the token's person no longer exists") from None
    roles = frozenset(person.roles)
    return Principal("person", token.subject, person.handle, roles, token.scopes & person_scopes(roles), token)


def _anonymous(ctx: ApiContext, request: Request, detail: str) -> ApiError:
    """401 for a caller without a valid token, once its address has taken its turn from the rate limiter
    (calling without a token, or guessing tokens, is slowed down as any call is)."""
    limit(ctx.limiter, f"address:{client_address(request)}")
    return _unauthorized(detail)


def _unauthorized(detail: str) -> ApiError:
    return ApiError(401, "unauthorized", detail, {"WWW-Authenticate": 'Bearer realm="provenance"'})


def any_caller(request: Request) -> Principal:
    """A dependency: whoever authenticates, with a token of any scope (a person's or a platform client's)."""
    return authenticate(request)


def needs(scope: str, *roles: str) -> Callable[[Request], Principal]:
    """A dependency: the authenticated principal, if `Access(scope, roles)` lets them call; else 401 or 403."""
    access = Access(scope, frozenset(roles) if roles else None)

    def dependency(request: Request) -> Principal:
        return access.check(authenticate(request))

    dependency.access = access  # type: ignore[attr-defined]
    return dependency
