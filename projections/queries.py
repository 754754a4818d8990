"""Reading the read models: the feed, a clip's lineage and trace, consent, audit trail and status.

Everything here returns plain JSON-safe dicts, so the CLI prints them as text or `--json` and the
verification step reports the same status a platform would see.
"""

from __future__ import annotations

import base64
import itertools
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from kernel.errors import InvalidInput, NotFound, quoted
from projections.database import ReadDatabase, utc


def _json_safe(row: dict[str, Any]) -> dict[str, Any]:
    return {key: utc(value).isoformat() if isinstance(value, datetime) else value for key, value in row.items()}


class ReadModels:
    """Queries over the read models, on the database at `url` (see `projections.database`)."""

    def __init__(self, url: str) -> None:
        self.db = ReadDatabase(url)

    def close(self) -> None:
        self.db.close()

    # --- feed --------------------------------------------------------------------------------------------

    def feed(self, limit: int = 20, cursor: str | None = None) -> dict[str, Any]:
        """One page of the feed, newest first; pass `next_cursor` back for the page after."""
        if not 1 <= limit <= 500:
            raise InvalidInput("limit must be between 1 and 500")
        after = ""
        params: dict[str, Any] = {"limit": limit + 1}
        if cursor:
            params["published_at"], params["video_id"] = _decode_cursor(cursor)
            after = "AND (published_at < :published_at OR (published_at = :published_at AND video_id < :video_id))"
        rows = self.db.rows(
            "SELECT video_id, creator_id, prompt, remix_of, requested_at, published_at, development_model"
            f" FROM feed_items WHERE visible {after} ORDER BY published_at DESC, video_id DESC LIMIT :limit",
            params,
        )
        page = rows[:limit]
        next_cursor = _encode_cursor(page[-1]["published_at"], page[-1]["video_id"]) if len(rows) > limit else None
        return {"items": [_json_safe(r) for r in page], "next_cursor": next_cursor}

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

    def unfinished_requests(self, command_prefix: str) -> list[str]:
        """Videos on their way through the gates (not yet published, blocked or failed) whose request's command
        id begins so, oldest first."""
        rows = self.db.rows(
            "SELECT l.video_id FROM lineage_videos AS l JOIN audit_events AS a ON a.stream_id = l.video_id"
            " AND a.event_type = 'GenerationRequested'"
            " WHERE l.state IN ('requested', 'rendered', 'moderated', 'signed')"
            " AND substr(a.command_id, 1, :length) = :prefix ORDER BY l.requested_at",
            {"prefix": command_prefix, "length": len(command_prefix)},
        )
        return [str(row["video_id"]) for row in rows]

    def awaiting_review(self) -> list[dict[str, Any]]:
        """Videos the classifiers held for a person's decision, oldest first."""
        rows = self.db.rows(
            "SELECT video_id, creator_id, prompt, updated_at, moderation FROM lineage_videos"
            " WHERE state = 'moderated' ORDER BY updated_at"
        )
        return [
            {
                "video_id": row["video_id"],
                "creator_id": row["creator_id"],
                "prompt": row["prompt"],
                "held_since": utc(row["updated_at"]).isoformat(),
                "reasons": (row["moderation"] or {}).get("reasons", []),
            }
            for row in rows
            if (row["moderation"] or {}).get("verdict") == "review"
        ]

    # --- lineage and trace -------------------------------------------------------------------------------

    def video(self, video_id: str) -> dict[str, Any]:
        video_id = stream_id_of(video_id, "video")
        rows = self.db.rows("SELECT * FROM lineage_videos WHERE video_id = :video_id", {"video_id": video_id})
        if not rows:
            raise NotFound(f"no video with id {video_id} in the read models (unknown, or not projected yet)")
        return _json_safe(rows[0])

    def children(self, video_id: str) -> list[str]:
        return self.db.values(
            "SELECT video_id FROM lineage_videos WHERE parent_id = :video_id ORDER BY requested_at",
            {"video_id": video_id},
        )

    def descendants(self, video_id: str) -> list[str]:
        """Every remix below a video, at any depth (a recursive query over parent ids)."""
        return self.db.values(
            "WITH RECURSIVE tree(video_id) AS ("
            " SELECT video_id FROM lineage_videos WHERE parent_id = :video_id"
            " UNION ALL SELECT v.video_id FROM lineage_videos v JOIN tree ON v.parent_id = tree.video_id"
            ") SELECT video_id FROM tree",
            {"video_id": video_id},
        )

    def ancestors(self, video_id: str) -> list[str]:
        chain: list[str] = []
        seen = {video_id}
        current = self.video(video_id)["parent_id"]
        while current is not None and current not in seen:
            chain.append(current)
            seen.add(current)
            current = self.video(current)["parent_id"]
        return chain

    def cameos_of(self, video_id: str) -> list[dict[str, Any]]:
        """Each likeness in the video, the grant it went out under (at publishing, else at the request) and that
        grant's state; `covered_by_another_grant` where that grant was revoked and the write side kept the video
        live, because another grant covers it now."""
        video_id = stream_id_of(video_id, "video")
        still_live = self.video(video_id)["state"] == "published" and not self._open_cases(video_id)
        rows = self.db.rows(
            "SELECT used.cameo_id, used.grant_id, g.audience, g.expires_at, g.revoked_at, g.revoke_reason,"
            " c.erased_at FROM lineage_cameos used"
            " LEFT JOIN consent_grants g ON g.grant_id = used.grant_id"
            " LEFT JOIN consent_cameos c ON c.cameo_id = used.cameo_id"
            " WHERE used.video_id = :video_id",
            {"video_id": video_id},
        )
        return [
            {
                **(r := _json_safe(row)),
                "audience": r["audience"] if r["grant_id"] != "owner" else "owner",
                "consent": self.cameo_standing(r["cameo_id"]) or _consent_state(r, still_live),
            }
            for row in rows
        ]

    def _consent_lapsed(self, video: dict[str, Any], open_cases: list[dict[str, Any]]) -> bool:
        """Whether the write side took the video down (or blocked it) because consent for a likeness in it
        ended: an open case of a consent source, or of a cascade that such a case began (whatever became of
        that case since), or a block at the consent gate, unless the block names a takedown above the video
        that began otherwise (a remix in flight whose parent came down for a notice)."""
        if video["block_gate"] == "consent" and video["state"] == "blocked":
            origin = self.block_origin(video["video_id"])
            return origin is None or str(origin["source"]) in CONSENT_SOURCES
        return any(str(self._origin(case)["source"]) in CONSENT_SOURCES for case in open_cases)

    def block_origin(self, video_id: str) -> dict[str, Any] | None:
        """For a video blocked because the video it remixes came down: the takedown that cascade began with (its
        source and reason code, as issued); None for a block that names no takedown above it."""
        cause = self._block_cause(video_id)
        return self._origin({"source": "cascade", "caused_by_event": cause}) if cause else None

    def _block_cause(self, video_id: str) -> str | None:
        """The takedown event the video's last block names (a remix blocked in a cascade), if it names one.

        A block recorded before `VideoBlocked` v2 names none: a cascade's block was recorded by the command that
        took the parent down, so the parent's takedown under the block's command id is the one.
        """
        rows = self.db.rows(
            "SELECT payload, command_id FROM audit_events WHERE stream_id = :video_id AND event_type = 'VideoBlocked'"
            " ORDER BY stream_version DESC LIMIT 1",
            {"video_id": video_id},
        )
        if not rows:
            return None
        named: str | None = (rows[0]["payload"].get("caused_by") or {}).get("event_id")
        if named is not None or rows[0]["command_id"] is None:
            return named
        parent = self.db.rows("SELECT parent_id FROM lineage_videos WHERE video_id = :video_id", {"video_id": video_id})
        if not parent or parent[0]["parent_id"] is None:
            return None
        taken_down = self.db.rows(
            "SELECT event_id FROM audit_events WHERE stream_id = :parent AND event_type = 'TakedownIssued'"
            " AND command_id = :command_id LIMIT 1",
            {"parent": parent[0]["parent_id"], "command_id": rows[0]["command_id"]},
        )
        return str(taken_down[0]["event_id"]) if taken_down else None

    def _origin(self, case: dict[str, Any]) -> dict[str, Any]:
        """The case a cascade began with (its `source` and `reason_code`): each cascade case names the takedown
        event above it, and the audit trail holds that event as it was issued."""
        origin, cause, seen = case, case.get("caused_by_event"), set()
        while origin.get("source") == "cascade" and cause and cause not in seen:
            seen.add(cause)
            rows = self.db.rows("SELECT payload FROM audit_events WHERE event_id = :event_id", {"event_id": cause})
            if not rows:
                break
            origin = rows[0]["payload"]
            cause = (origin.get("caused_by") or {}).get("event_id")
        return origin

    def cameo_standing(self, cameo_id: str) -> str | None:
        """`held` or `rejected` when trust and safety's review left the cameo covering no one, else None."""
        rows = self.db.rows(
            "SELECT event_type, payload FROM audit_events WHERE stream_id = :cameo_id"
            " AND event_type IN ('CameoHeld', 'CameoReviewed') ORDER BY stream_version DESC LIMIT 1",
            {"cameo_id": cameo_id},
        )
        if not rows:
            return None
        if rows[0]["event_type"] == "CameoHeld":
            return "held"
        return "rejected" if rows[0]["payload"]["decision"] == "rejected" else None

    def _open_cases(self, video_id: str) -> list[dict[str, Any]]:
        return [c for c in self.takedowns(video_id) if c["status"] != "reinstated"]

    def takedowns(self, video_id: str) -> list[dict[str, Any]]:
        rows = self.db.rows(
            "SELECT * FROM takedown_cases WHERE video_id = :video_id ORDER BY issued_at", {"video_id": video_id}
        )
        return [_json_safe(r) for r in rows]

    def trace(self, video_id: str) -> dict[str, Any]:
        """Everything an auditor asks of a clip: origin, gates, cameos and consent, takedowns, lineage.

        `ancestors` lists every video above it, nearest first; `parent` nests the traces of the nearest
        `TRACE_PARENTS` of them (a remix chain may be thousands deep).
        """
        video_id = stream_id_of(video_id, "video")
        ancestors = self.ancestors(video_id)
        traced = [self._trace_one(v) for v in [video_id, *ancestors[:TRACE_PARENTS]]]
        for child, parent in itertools.pairwise(traced):
            child["parent"] = parent
        traced[0]["ancestors"] = ancestors
        return traced[0]

    def _trace_one(self, video_id: str) -> dict[str, Any]:
        video = self.video(video_id)
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
            "parent": None,
        }

    def handles(self, person_ids: set[str]) -> dict[str, str]:
        """person id -> handle, for the ids that are people (workers act as `system:<role>`)."""
        if not person_ids:
            return {}
        listed, params = self.db.expand("person", sorted(person_ids))
        rows = self.db.rows(f"SELECT person_id, handle FROM audit_people WHERE person_id IN ({listed})", params)
        return {row["person_id"]: row["handle"] for row in rows}

    # --- consent, audit, status --------------------------------------------------------------------------

    def grants(self, cameo_id: str, live_only: bool = False, now: datetime | None = None) -> list[dict[str, Any]]:
        live = " AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > :now)" if live_only else ""
        if live_only and self.cameo_standing(cameo_id) is not None:
            return []  # a held or rejected cameo's grants cover no one
        rows = self.db.rows(
            f"SELECT * FROM consent_grants WHERE cameo_id = :cameo_id{live} ORDER BY granted_at",
            {"cameo_id": cameo_id, "now": now or datetime.now(UTC)},
        )
        return [_json_safe(r) for r in rows]

    def cameos_owned_by(self, owner_id: str) -> list[dict[str, Any]]:
        """A person's cameos, oldest first (the console's "my cameos")."""
        rows = self.db.rows(
            "SELECT * FROM consent_cameos WHERE owner_id = :owner_id ORDER BY registered_at", {"owner_id": owner_id}
        )
        return [_json_safe(r) for r in rows]

    def remix_counts(self, video_ids: list[str]) -> dict[str, int]:
        """How many direct remixes each video has."""
        if not video_ids:
            return {}
        listed, params = self.db.expand("video", video_ids)
        rows = self.db.rows(
            "SELECT parent_id, COUNT(*) AS remixes FROM lineage_videos"
            f" WHERE parent_id IN ({listed}) GROUP BY parent_id",
            params,
        )
        return {row["parent_id"]: row["remixes"] for row in rows}

    def videos_signed_by(self, certificate_fingerprint: str) -> list[str]:
        """Every video signed with a certificate (sha256 of its DER), oldest first: what a distrust affects."""
        rows = self.db.rows(
            "SELECT video_id, signature FROM lineage_videos WHERE signature IS NOT NULL ORDER BY requested_at"
        )
        return [
            row["video_id"]
            for row in rows
            if (row["signature"] or {}).get("certificate_fingerprint") == certificate_fingerprint
        ]

    def open_appeals(self) -> list[dict[str, Any]]:
        """Takedown cases appealed and not yet decided, oldest appeal first (trust and safety's queue)."""
        rows = self.db.rows("SELECT * FROM takedown_cases WHERE status = 'appealed' ORDER BY appealed_at")
        return [_json_safe(r) for r in rows]

    def live_cameo_ids(self) -> list[str]:
        """Every registered likeness not erased: what the likeness classifier compares faces with."""
        return self.db.values("SELECT cameo_id FROM consent_cameos WHERE erased_at IS NULL")

    def videos_with_cameo(self, cameo_id: str) -> list[dict[str, Any]]:
        rows = self.db.rows(
            "SELECT v.video_id, v.creator_id, v.state, v.taken_down FROM lineage_videos v"
            " JOIN lineage_cameos used ON used.video_id = v.video_id"
            " WHERE used.cameo_id = :cameo_id ORDER BY v.requested_at",
            {"cameo_id": cameo_id},
        )
        return [_json_safe(r) for r in rows]

    def audit_trail(self, stream_id: str) -> list[dict[str, Any]]:
        stream_id = stream_id_of(stream_id, "stream")
        rows = [
            _json_safe(r)
            for r in self.db.rows(
                "SELECT * FROM audit_events WHERE stream_id = :stream_id ORDER BY stream_version",
                {"stream_id": stream_id},
            )
        ]
        if not rows:
            raise NotFound(f"no events for stream {stream_id} in the audit trail")
        names = self.handles({r["actor"] for r in rows})
        for row in rows:
            row["actor_handle"] = names.get(row["actor"])
        return rows

    def status(self, video_id: str) -> dict[str, Any] | None:
        """The current status a platform needs: published, taken down (with the reason), and whether consent
        for a likeness in it was revoked: as the write side decided it (`_consent_lapsed`), not by the grant
        the video was made under, which another grant may have replaced."""
        video_id = stream_id_of(video_id, "video")
        try:
            video = self.video(video_id)
        except NotFound:
            return None
        cases = self._open_cases(video_id)
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
            "consent_revoked": self._consent_lapsed(video, cases),
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
        clauses: list[str] = []
        params: dict[str, Any] = {}
        keys = [*([soft_binding] if soft_binding else []), *(soft_bindings or [])]
        if keys:
            listed, params = self.db.expand("binding", keys)
            clauses.append(f"soft_binding IN ({listed})")
        if sha256:
            clauses += ["signed_sha256 = :sha256", "content_sha256 = :sha256"]
            params["sha256"] = sha256
        if manifest_id:
            clauses.append("manifest_id = :manifest_id")
            params["manifest_id"] = manifest_id
        if not clauses:
            return None
        found = self.db.values(f"SELECT video_id FROM lineage_videos WHERE {' OR '.join(clauses)} LIMIT 1", params)
        return found[0] if found else None


TRACE_PARENTS = 100
"""The ancestors whose whole traces a trace nests (each is also listed by id in `ancestors`)."""

CONSENT_SOURCES = frozenset({"consent_revocation", "consent_expiry"})
"""Takedown sources that mean consent for a likeness ended."""


def _consent_state(row: dict[str, Any], video_live: bool) -> str:
    if row["erased_at"]:
        return "erased"
    if row["grant_id"] == "owner":
        return "owner"
    if row["revoked_at"]:
        # A revocation takes down, in its own transaction, every video no other grant covers: one it left up is
        # covered by another. (An expiry is recorded by a sweep, after the time: until then "expired" stands.)
        return "covered_by_another_grant" if video_live else "revoked"
    if row["expires_at"] and datetime.fromisoformat(row["expires_at"]) <= datetime.now(UTC):
        return "expired"
    return "live"


def _encode_cursor(published_at: datetime, video_id: str) -> str:
    raw = f"{utc(published_at).isoformat()}|{video_id}"
    return base64.urlsafe_b64encode(raw.encode()).decode()


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        published_at, video_id = base64.urlsafe_b64decode(cursor.encode()).decode().split("|")
        at = datetime.fromisoformat(published_at)
        return (utc(at) if at.tzinfo is None else at.astimezone(UTC)), stream_id_of(video_id, "video")
    except (ValueError, UnicodeDecodeError, OverflowError, InvalidInput) as exc:  # a time past the calendar's ends
        raise InvalidInput(f"invalid feed cursor {cursor!r}") from exc


def stream_id_of(text: str, what: str) -> str:
    """A stream id in its canonical form; a malformed one is bad input, not an unknown id."""
    try:
        return str(UUID(str(text).strip()))
    except ValueError:
        raise InvalidInput(f"{what} id {quoted(text)} is not a valid id (a UUID)") from None
