"""Takedown and appeal status: one row per case, from issue through appeal to reinstatement."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.engine import Connection

from projections.framework import Projection, RowCache, to_load
from projections.tables import TakedownCase
from schemas.envelope import EventEnvelope


class TakedownProjection(Projection):
    name = "takedowns"
    tables = (TakedownCase,)
    event_types = frozenset({"TakedownIssued", "TakedownAppealed", "VideoReinstated"})

    def apply(self, events: Sequence[EventEnvelope], conn: Connection) -> None:
        cases = RowCache(TakedownCase, "case_id")
        cases.load(conn, to_load((e.payload["case_id"], e.event_type == "TakedownIssued") for e in events))
        for e in events:
            p = e.payload
            if e.event_type == "TakedownIssued":
                cause = p.get("caused_by") or {}
                cases.create(
                    p["case_id"],
                    video_id=e.stream_id,
                    source=p["source"],
                    reason_code=p["reason_code"],
                    policy_clause=p["policy_clause"],
                    legal_ground=p["legal_ground"],
                    automated=p["automated"],
                    statement_of_reasons=p["statement_of_reasons"],
                    caused_by_event=cause.get("event_id"),
                    caused_by_stream=cause.get("stream_id"),
                    issued_by=e.actor,
                    issued_at=e.occurred_at,
                    status="open",
                )
            elif e.event_type == "TakedownAppealed":
                cases.update(p["case_id"], status="appealed", appeal_grounds=p["grounds"], appealed_at=e.occurred_at)
            elif e.event_type == "VideoReinstated":
                cases.update(
                    p["case_id"],
                    status="reinstated",
                    resolution=p["decision"],
                    resolved_by=e.actor,
                    resolved_at=e.occurred_at,
                )
        cases.flush(conn)
