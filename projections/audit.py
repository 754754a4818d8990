"""Audit trail: every event of every stream, in order, with its actor and, where it has one, its reason."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.engine import Connection

from projections.framework import Projection, insert_ignoring_duplicates, table_of, upsert
from projections.tables import AuditEntry, Person
from schemas.catalogue import STREAM_OF
from schemas.envelope import EventEnvelope


def reason_of(event_type: str, payload: dict[str, Any]) -> str | None:
    """The human reason an event carries, so an auditor reads it without opening the payload."""
    if event_type in ("ConsentRevoked", "CameoErased"):
        return str(payload["reason"])
    if event_type == "TakedownIssued":
        return f"{payload['reason_code']}: {payload['statement_of_reasons']}"
    if event_type == "TakedownAppealed":
        return str(payload["grounds"])
    if event_type == "VideoReinstated":
        return str(payload["decision"])
    if event_type == "VideoBlocked":
        return f"{payload['gate']}: " + "; ".join(payload["reasons"])
    if event_type == "RenderFailed":
        return str(payload["reason"])
    if event_type == "ModerationDecided" and payload.get("reasons"):
        return "; ".join(payload["reasons"])
    return None


class AuditProjection(Projection):
    name = "audit"
    tables = (AuditEntry, Person)
    event_types = frozenset(STREAM_OF)

    def apply(self, events: Sequence[EventEnvelope], conn: Connection) -> None:
        people = [
            {
                "person_id": e.stream_id,
                "handle": e.payload["handle"],
                "display_name": e.payload["display_name"],
                "roles": e.payload["roles"],
            }
            for e in events
            if e.event_type == "PersonRegistered"
        ]
        upsert(conn, table_of(Person), people, ["person_id"])
        insert_ignoring_duplicates(
            conn,
            table_of(AuditEntry),
            [
                {
                    "event_id": e.event_id,
                    "stream_type": e.stream_type,
                    "stream_id": e.stream_id,
                    "stream_version": e.stream_version,
                    "event_type": e.event_type,
                    "schema_version": e.schema_version,
                    "occurred_at": e.occurred_at,
                    "actor": e.actor,
                    "command_id": e.command_id,
                    "reason": reason_of(e.event_type, e.payload),
                    "payload": e.payload,
                }
                for e in events
            ],
        )
