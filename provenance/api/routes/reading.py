"""The read models: the feed, a stream's audit trail, parked events (operators)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from provenance.api.app import context
from provenance.api.security import ADMINISTRATOR, AUDITOR, TRUST_AND_SAFETY, Principal, needs
from provenance.cli import render

router = APIRouter(tags=["reading"])


@router.get("/feed", summary="published videos, newest first, a page at a time")
def feed(
    request: Request,
    _: Annotated[Principal, Depends(needs("read"))],
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> dict[str, Any]:
    return dict(context(request).reads().feed(limit=limit, cursor=cursor))


@router.get("/audit/{stream_id}", summary="every event of a video, cameo or person, in order, with actors")
def audit(
    stream_id: str,
    request: Request,
    _: Annotated[Principal, Depends(needs("read", AUDITOR, TRUST_AND_SAFETY, ADMINISTRATOR))],
) -> list[dict[str, Any]]:
    return list(context(request).reads().audit_trail(stream_id))


@router.get("/parked", summary="events a consumer could not handle, with the reason (operators, auditors)")
def parked(
    request: Request,
    _: Annotated[Principal, Depends(needs("read", ADMINISTRATOR, AUDITOR))],
    consumer: Annotated[str | None, Query(max_length=100)] = None,
    include_replayed: bool = False,
) -> list[dict[str, Any]]:
    from provenance.kafka.roles import list_parked

    return render.parked_json(
        list_parked(context(request).system, consumer, include_replayed=include_replayed, limit=1000)
    )
