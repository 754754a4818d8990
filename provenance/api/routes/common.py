"""What the endpoints share: the principal's idempotency key, a request's body as a bounded file."""

from __future__ import annotations

import re
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import Request

from kernel.errors import InvalidInput
from provenance.api.app import OVER_HTTP, context
from provenance.api.security import Principal

_KEY = re.compile(r"[A-Za-z0-9._:-]{1,100}")


def command_id(request: Request, caller: Principal | None) -> str | None:
    """`Idempotency-Key`: a retry with the same key (after a lost response) records nothing twice.

    Keys are the caller's own (a token's person or client; `None`, an anonymous sign-up): the same key from
    another caller names another command, so it neither answers with someone else's result nor collides.
    """
    key = request.headers.get("idempotency-key")
    if key is None:
        return None
    if not _KEY.fullmatch(key):
        raise InvalidInput("Idempotency-Key must be 1 to 100 letters, digits or . _ : -")
    who = f"{caller.kind}:{caller.subject}" if caller is not None else "anonymous"
    return f"{OVER_HTTP}{who}:{key}"


async def body_bytes(request: Request) -> bytes:
    """The whole body (the size middleware has already bounded it)."""
    data = await request.body()
    if not data:
        raise InvalidInput("the request body is empty: send the file as the body")
    return data


@asynccontextmanager
async def body_file(request: Request, scratch: Path, caller: str) -> AsyncIterator[Path]:
    """The body streamed to a temporary file (bounded by the size middleware), removed afterwards; at most a few
    at once for one caller and for everybody (`Uploads`)."""
    with context(request).uploads.receiving(caller):
        async with _received(request, scratch) as path:
            yield path


@asynccontextmanager
async def _received(request: Request, scratch: Path) -> AsyncIterator[Path]:
    scratch.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=scratch, prefix="upload-", suffix=".mp4", delete=False) as out:
        path = Path(out.name)
        try:
            size = 0
            async for chunk in request.stream():
                out.write(chunk)
                size += len(chunk)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
    try:
        if size == 0:
            raise InvalidInput("the request body is empty: send the file as the body")
        yield path
    finally:
        path.unlink(missing_ok=True)
