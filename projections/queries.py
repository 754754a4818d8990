"""Reading the read models: the feed, a clip's lineage and trace, consent, audit trail and status.

Everything here returns plain JSON-safe dicts, so the CLI prints them as text or `--json` and the
verification step reports the same status a platform would see.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from kernel.errors import InvalidInput, NotFound
from projections.framework import table_of, utc
from projections.tables import (
    AuditEntry,
    ConsentCameo,
    ConsentGrant,
    FeedItem,
    LineageCameo,
    LineageVideo,
    Person,
    TakedownCase,
)

_feed = table_of(FeedItem)
_videos = table_of(LineageVideo)
_video_cameos = table_of(LineageCameo)
_cameos = table_of(ConsentCameo)
_grants = table_of(ConsentGrant)
_audit = table_of(AuditEntry)
_cases = table_of(TakedownCase)
_people = table_of(Person)


def _json_safe(row: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in dict(row).items():
        if isinstance(value, datetime):
            value = utc(value).isoformat()  # type: ignore[union-attr]
        out[key] = value
    return out


class ReadModels:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # --- feed --------------------------------------------------------------------------------------------

    def feed(self, limit: int = 20, cursor: str | None = None) -> dict[str, Any]:
        """One page of the feed, newest first; pass `next_cursor` back for the page after."""
        if not 1 <= limit <= 500:
            raise InvalidInput("limit must be between 1 and 500")
        query = (
            sa.select(_feed)
            .where(_feed.c.visible.is_(True))
            .order_by(_feed.c.published_at.desc(), _feed.c.video_id.desc())
            .limit(limit + 1)
        )
        if cursor:
            published_at, video_id = _decode_cursor(cursor)
            query = query.where(
                sa.or_(
                    _feed.c.published_at < published_at,
                    sa.and_(_feed.c.published_at == published_at, _feed.c.video_id < video_id),
                )
            )
        with self.engine.connect() as conn:
            rows = list(conn.execute(query).mappings())
        page = rows[:limit]
        next_cursor = _encode_cursor(page[-1]["published_at"], page[-1]["video_id"]) if len(rows) > limit else None
        items = [
            {k: v for k, v in _json_safe(r).items() if k not in ("visible", "open_cases", "grant_ids")} for r in page
        ]
        return {"items": items, "next_cursor": next_cursor}

    def feed_ids(self) -> set[str]:
        """Every video id the feed shows now (for checks; the feed itself is paged)."""
        ids: set[str] = set()
        cursor = None
        while True:
            page = self.feed(limit=500, cursor=cursor)
            ids.update(item["video_id"] for item in page["items"])
            cursor = page["next_cursor"]
            if cursor is None:
                return ids

    def awaiting_review(self) -> list[dict[str, Any]]:
        """Videos the classifiers held for a person's decision, oldest first."""
        query = sa.select(_videos).where(_videos.c.state == "moderated").order_by(_videos.c.updated_at)
        with self.engine.connect() as conn:
            rows = [dict(r) for r in conn.execute(query).mappings()]
        return [
            {
                "video_id": row["video_id"],
                "creator_id": row["creator_id"],
                "prompt": row["prompt"],
                "held_since": _json_safe({"t": row["updated_at"]})["t"],
                "reasons": (row["moderation"] or {}).get("reasons", []),
            }
            for row in rows
            if (row["moderation"] or {}).get("verdict") == "review"
        ]

    # --- lineage and trace -------------------------------------------------------------------------------

    def video(self, video_id: str) -> dict[str, Any]:
        video_id = stream_id_of(video_id, "video")
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(_videos).where(_videos.c.video_id == video_id)).mappings().first()
        if row is None:
            raise NotFound(f"no video with id {video_id} in the read models (unknown, or not projected yet)")
        return _json_safe(row)

    def children(self, video_id: str) -> list[str]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(_videos.c.video_id).where(_videos.c.parent_id == video_id).order_by(_videos.c.requested_at)
            )
            return [r[0] for r in rows]

    def descendants(self, video_id: str) -> list[str]:
        """Every remix below a video, at any depth (a recursive query over parent ids)."""
        tree = sa.select(_videos.c.video_id).where(_videos.c.parent_id == video_id).cte("tree", recursive=True)
        tree = tree.union_all(sa.select(_videos.c.video_id).where(_videos.c.parent_id == tree.c.video_id))
        with self.engine.connect() as conn:
            return [r[0] for r in conn.execute(sa.select(tree.c.video_id))]

    def ancestors(self, video_id: str) -> list[str]:
        chain: list[str] = []
        current = self.video(video_id)["parent_id"]
        while current is not None and current not in chain:
            chain.append(current)
            current = self.video(current)["parent_id"]
        return chain

    def cameos_of(self, video_id: str) -> list[dict[str, Any]]:
        query = (
            sa.select(_video_cameos.c.cameo_id, _video_cameos.c.grant_id, _grants, _cameos.c.erased_at)
            .select_from(
                _video_cameos.outerjoin(_grants, _grants.c.grant_id == _video_cameos.c.grant_id).outerjoin(
                    _cameos, _cameos.c.cameo_id == _video_cameos.c.cameo_id
                )
            )
            .where(_video_cameos.c.video_id == video_id)
        )
        with self.engine.connect() as conn:
            rows = [_json_safe(r) for r in conn.execute(query).mappings()]
        return [
            {
                "cameo_id": r["cameo_id"],
                "grant_id": r["grant_id"],
                "audience": r["audience"] if r["grant_id"] != "owner" else "owner",
                "expires_at": r["expires_at"],
                "revoked_at": r["revoked_at"],
                "revoke_reason": r["revoke_reason"],
                "erased_at": r["erased_at"],
                "consent": _consent_state(r),
            }
            for r in rows
        ]

    def takedowns(self, video_id: str) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(_cases).where(_cases.c.video_id == video_id).order_by(_cases.c.issued_at))
            return [_json_safe(r) for r in rows.mappings()]

    def trace(self, video_id: str) -> dict[str, Any]:
        """Everything an auditor asks of a clip: origin, gates, cameos and consent, takedowns, lineage."""
        video = self.video(video_id)
        parent = video["parent_id"]
        return {
            "video_id": video_id,
            "state": video["state"],
            "taken_down": video["taken_down"],
            "creator_id": video["creator_id"],
            "creator": self.handles({video["creator_id"]}).get(video["creator_id"]),
            "prompt": video["prompt"],
            "seed": video["seed"],
            "parameters": video["parameters"],
            "requested_at": video["requested_at"],
            "rendered": video["rendered"],
            "moderation": video["moderation"],
            "signature": video["signature"],
            "blocked": {"gate": video["block_gate"], "reasons": video["block_reasons"]}
            if video["block_gate"]
            else None,
            "cameos": self.cameos_of(video_id),
            "takedowns": self.takedowns(video_id),
            "children": self.children(video_id),
            "descendants": len(self.descendants(video_id)),
            "parent": self.trace(parent) if parent else None,
        }

    def handles(self, person_ids: set[str]) -> dict[str, str]:
        """person id -> handle, for the ids that are people (workers act as `system:<role>`)."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(_people.c.person_id, _people.c.handle).where(_people.c.person_id.in_(person_ids))
            )
            return {person_id: handle for person_id, handle in rows}

    # --- consent, audit, status --------------------------------------------------------------------------

    def grants(self, cameo_id: str, live_only: bool = False, now: datetime | None = None) -> list[dict[str, Any]]:
        now = now or datetime.now(UTC)
        query = sa.select(_grants).where(_grants.c.cameo_id == cameo_id).order_by(_grants.c.granted_at)
        if live_only:
            query = query.where(_grants.c.revoked_at.is_(None)).where(
                sa.or_(_grants.c.expires_at.is_(None), _grants.c.expires_at > now)
            )
        with self.engine.connect() as conn:
            return [_json_safe(r) for r in conn.execute(query).mappings()]

    def cameos_owned_by(self, owner_id: str) -> list[dict[str, Any]]:
        """A person's cameos, oldest first (the console's "my cameos")."""
        query = sa.select(_cameos).where(_cameos.c.owner_id == owner_id).order_by(_cameos.c.registered_at)
        with self.engine.connect() as conn:
            return [_json_safe(r) for r in conn.execute(query).mappings()]

    def remix_counts(self, video_ids: list[str]) -> dict[str, int]:
        """How many direct remixes each video has."""
        query = (
            sa.select(_videos.c.parent_id, sa.func.count())
            .where(_videos.c.parent_id.in_(video_ids))
            .group_by(_videos.c.parent_id)
        )
        with self.engine.connect() as conn:
            return {parent: count for parent, count in conn.execute(query)}

    def videos_signed_by(self, certificate_fingerprint: str) -> list[str]:
        """Every video signed with a certificate (sha256 of its DER), oldest first: what a distrust affects."""
        query = (
            sa.select(_videos.c.video_id, _videos.c.signature)
            .where(_videos.c.signature.is_not(None))
            .order_by(_videos.c.requested_at)
        )
        found = []
        with self.engine.connect() as conn:
            for video_id, signature in conn.execute(query).yield_per(1000):
                if (signature or {}).get("certificate_fingerprint") == certificate_fingerprint:
                    found.append(video_id)
        return found

    def open_appeals(self) -> list[dict[str, Any]]:
        """Takedown cases appealed and not yet decided, oldest appeal first (trust and safety's queue)."""
        query = sa.select(_cases).where(_cases.c.status == "appealed").order_by(_cases.c.appealed_at)
        with self.engine.connect() as conn:
            return [_json_safe(r) for r in conn.execute(query).mappings()]

    def live_cameo_ids(self) -> list[str]:
        """Every registered likeness not erased: what the likeness classifier compares faces with."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(_cameos.c.cameo_id).where(_cameos.c.erased_at.is_(None)))
            return [r[0] for r in rows]

    def videos_with_cameo(self, cameo_id: str) -> list[dict[str, Any]]:
        query = (
            sa.select(_videos.c.video_id, _videos.c.creator_id, _videos.c.state, _videos.c.taken_down)
            .join(_video_cameos, _video_cameos.c.video_id == _videos.c.video_id)
            .where(_video_cameos.c.cameo_id == cameo_id)
            .order_by(_videos.c.requested_at)
        )
        with self.engine.connect() as conn:
            return [_json_safe(r) for r in conn.execute(query).mappings()]

    def audit_trail(self, stream_id: str) -> list[dict[str, Any]]:
        stream_id = stream_id_of(stream_id, "stream")
        query = sa.select(_audit).where(_audit.c.stream_id == stream_id).order_by(_audit.c.stream_version)
        with self.engine.connect() as conn:
            rows = [_json_safe(r) for r in conn.execute(query).mappings()]
        if not rows:
            raise NotFound(f"no events for stream {stream_id} in the audit trail")
        names = self.handles({r["actor"] for r in rows})
        for row in rows:
            row["actor_handle"] = names.get(row["actor"])
        return rows

    def status(self, video_id: str) -> dict[str, Any] | None:
        """The current status a platform needs: published, taken down (with the reason), consent revoked."""
        try:
            video = self.video(video_id)
        except NotFound:
            return None
        cases = [c for c in self.takedowns(video_id) if c["status"] != "reinstated"]
        cameos = self.cameos_of(video_id)
        if cases:
            status = "taken_down"
        elif video["state"] == "published":
            status = "published"
        else:
            status = video["state"]
        return {
            "video_id": video_id,
            "status": status,
            "takedown": {k: cases[0][k] for k in ("case_id", "reason_code", "source", "statement_of_reasons")}
            if cases
            else None,
            "consent_revoked": any(c["consent"] in ("revoked", "expired", "erased") for c in cameos),
            "development_model": bool((video["moderation"] or {}).get("development_model")),
        }

    def resolve(
        self,
        *,
        soft_binding: str | None = None,
        soft_bindings: list[str] | None = None,
        sha256: str | None = None,
        manifest_id: str | None = None,
    ) -> str | None:
        """The video a soft binding (`alg:value`, or any of several), a content or signed-file hash, or a
        manifest id points at."""
        clauses: list[sa.ColumnElement[bool]] = []
        keys = [*([soft_binding] if soft_binding else []), *(soft_bindings or [])]
        if keys:
            clauses.append(_videos.c.soft_binding.in_(keys))
        if sha256:
            clauses += [_videos.c.signed_sha256 == sha256, _videos.c.content_sha256 == sha256]
        if manifest_id:
            clauses.append(_videos.c.manifest_id == manifest_id)
        if not clauses:
            return None
        with self.engine.connect() as conn:
            return conn.execute(sa.select(_videos.c.video_id).where(sa.or_(*clauses)).limit(1)).scalar_one_or_none()


def _consent_state(row: dict[str, Any]) -> str:
    if row["erased_at"]:
        return "erased"
    if row["grant_id"] == "owner":
        return "owner"
    if row["revoked_at"]:
        return "revoked"
    if row["expires_at"] and datetime.fromisoformat(row["expires_at"]) <= datetime.now(UTC):
        return "expired"
    return "live"


def _encode_cursor(published_at: datetime, video_id: str) -> str:
    raw = f"{utc(published_at).isoformat()}|{video_id}"  # type: ignore[union-attr]
    return base64.urlsafe_b64encode(raw.encode()).decode()


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        published_at, video_id = base64.urlsafe_b64decode(cursor.encode()).decode().split("|")
        return datetime.fromisoformat(published_at), video_id
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"invalid feed cursor {cursor!r}") from exc


def stream_id_of(text: str, what: str) -> str:
    """A stream id in its canonical form; a malformed one is bad input, not an unknown id."""
    try:
        return str(UUID(str(text).strip()))
    except ValueError:
        raise InvalidInput(f"{what} id {text!r} is not a valid id (a UUID)") from None
