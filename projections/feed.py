"""The feed: published videos that are not taken down, newest first.

Whether consent still covers a video is the write side's decision: a lapse (revocation, expiry, unfollow,
erasure) is recorded as a takedown, so the feed shows exactly what the write side holds live, and a video
covered by a newer grant stays up when the one it was published under ends.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.engine import Connection

from projections.framework import Projection, RowCache, to_load
from projections.tables import FeedItem
from schemas.envelope import EventEnvelope


class FeedProjection(Projection):
    name = "feed"
    ahead = True
    tables = (FeedItem,)
    event_types = frozenset(
        {"GenerationRequested", "ModerationDecided", "VideoPublished", "TakedownIssued", "VideoReinstated"}
    )

    def apply(self, events: Sequence[EventEnvelope], conn: Connection) -> None:
        items = RowCache(FeedItem, "video_id", reads=("open_cases", "published_at"))
        items.load(
            conn,
            to_load((e.stream_id, e.event_type == "GenerationRequested") for e in events if e.stream_type == "video"),
        )
        for e in events:
            p = e.payload
            if e.event_type == "GenerationRequested":
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
                ids = [c["grant_id"] for c in p.get("consent_checked", []) if c["grant_id"] != "owner"]
                items.update(e.stream_id, published_at=e.occurred_at, visible=True, grant_ids=ids)
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
