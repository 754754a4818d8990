"""The feed: published videos that are not taken down and whose consent has not lapsed, newest first."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.engine import Connection

from projections.framework import Projection, RowCache, to_load, utc
from projections.tables import FeedGrantExpiry, FeedItem
from schemas.envelope import EventEnvelope


class FeedProjection(Projection):
    name = "feed"
    tables = (FeedItem, FeedGrantExpiry)
    event_types = frozenset(
        {
            "ConsentGranted",
            "GenerationRequested",
            "ModerationDecided",
            "VideoPublished",
            "TakedownIssued",
            "VideoReinstated",
        }
    )

    def apply(self, events: Sequence[EventEnvelope], conn: Connection) -> None:
        items = RowCache(FeedItem, "video_id")
        grants = RowCache(FeedGrantExpiry, "grant_id")
        items.load(
            conn,
            to_load((e.stream_id, e.event_type == "GenerationRequested") for e in events if e.stream_type == "video"),
        )
        grants.load(
            conn,
            to_load(
                (g, e.event_type == "ConsentGranted")
                for e in events
                if e.event_type in ("ConsentGranted", "VideoPublished")
                for g in ([e.payload["grant_id"]] if e.event_type == "ConsentGranted" else _grant_ids(e))
            ),
        )
        for e in events:
            p = e.payload
            if e.event_type == "ConsentGranted":
                expires = p.get("expires_at")
                grants.create(p["grant_id"], expires_at=datetime.fromisoformat(expires) if expires else None)
            elif e.event_type == "GenerationRequested":
                items.create(
                    e.stream_id,
                    creator_id=p["creator_id"],
                    prompt=p["prompt"],
                    remix_of=p["remix_of"],
                    requested_at=e.occurred_at,
                    grant_ids=[],
                    open_cases=[],
                )
            elif e.event_type == "ModerationDecided":
                items.update(e.stream_id, development_model=bool(p["development_model"]))
            elif e.event_type == "VideoPublished":
                ids = _grant_ids(e)
                expiries = [utc((grants.get(g) or {}).get("expires_at")) for g in ids]
                dated = [x for x in expiries if x is not None]
                items.update(
                    e.stream_id,
                    published_at=e.occurred_at,
                    visible=True,
                    grant_ids=ids,
                    consent_expires_at=min(dated) if dated else None,
                )
            elif e.event_type in ("TakedownIssued", "VideoReinstated"):
                row = items.get(e.stream_id)
                if row is None:
                    continue
                cases = set(row["open_cases"] or [])
                if e.event_type == "TakedownIssued":
                    cases.add(p["case_id"])
                else:
                    cases.discard(p["case_id"])
                visible = not cases and row["published_at"] is not None
                items.update(e.stream_id, open_cases=sorted(cases), visible=visible)
        items.flush(conn)
        grants.flush(conn)


def _grant_ids(e: EventEnvelope) -> list[str]:
    return [c["grant_id"] for c in e.payload.get("consent_checked", []) if c["grant_id"] != "owner"]
