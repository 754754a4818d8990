"""Consent registry: each cameo's owner and grants, live or not, with who revoked what and why."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.engine import Connection

from projections.framework import Projection, RowCache, to_load
from projections.tables import ConsentCameo, ConsentGrant
from schemas.envelope import EventEnvelope


class ConsentProjection(Projection):
    name = "consent"
    tables = (ConsentCameo, ConsentGrant)
    event_types = frozenset(
        {"CameoRegistered", "ConsentGranted", "ConsentRevoked", "GranteeRemoved", "CameoUseRecorded", "CameoErased"}
    )

    def apply(self, events: Sequence[EventEnvelope], conn: Connection) -> None:
        cameos = RowCache(ConsentCameo, "cameo_id")
        grants = RowCache(ConsentGrant, "grant_id")
        cameos.load(conn, to_load((e.stream_id, e.event_type == "CameoRegistered") for e in events))
        grants.load(
            conn,
            to_load(
                (e.payload["grant_id"], e.event_type == "ConsentGranted")
                for e in events
                if e.event_type in ("ConsentGranted", "ConsentRevoked", "GranteeRemoved")
            ),
        )
        for e in events:
            p = e.payload
            if e.event_type == "CameoRegistered":
                cameos.create(e.stream_id, owner_id=p["owner_id"], registered_at=e.occurred_at, uses=0)
            elif e.event_type == "ConsentGranted":
                owner = (cameos.get(e.stream_id) or {}).get("owner_id", "")
                expires = p.get("expires_at")
                grants.create(
                    p["grant_id"],
                    cameo_id=e.stream_id,
                    owner_id=owner,
                    audience=p["audience"],
                    grantees=p["grantees"],
                    scope=p["scope"],
                    granted_at=e.occurred_at,
                    expires_at=datetime.fromisoformat(expires) if expires else None,
                )
            elif e.event_type == "GranteeRemoved":
                row = grants.get(p["grant_id"])
                if row is not None:
                    grants.update(p["grant_id"], grantees=[g for g in row["grantees"] if g != p["person_id"]])
            elif e.event_type == "ConsentRevoked":
                grants.update(p["grant_id"], revoked_at=e.occurred_at, revoked_by=e.actor, revoke_reason=p["reason"])
            elif e.event_type == "CameoUseRecorded":
                row = cameos.get(e.stream_id)
                if row is not None:
                    cameos.update(e.stream_id, uses=row["uses"] + 1)
            elif e.event_type == "CameoErased":
                cameos.update(e.stream_id, erased_at=e.occurred_at)
        cameos.flush(conn)
        grants.flush(conn)
