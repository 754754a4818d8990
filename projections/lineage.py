"""Lineage and status: each video's parent, cameos, gate results and current state.

Children and transitive descendants are queries over `parent_id` (see `projections.queries`). This is also
the index that verification resolves through: content hash, signed hash, manifest id and soft binding.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.engine import Connection

from projections.framework import Projection, RowCache, table_of, to_load, upsert
from projections.tables import LineageCameo, LineageVideo
from schemas.envelope import EventEnvelope

_STATE_OF = {
    "VideoRendered": "rendered",
    "RenderFailed": "render_failed",
    "ModerationDecided": "moderated",
    "VideoSigned": "signed",
    "VideoPublished": "published",
    "VideoBlocked": "blocked",
}


class LineageProjection(Projection):
    name = "lineage"
    tables = (LineageVideo, LineageCameo)
    event_types = frozenset({"GenerationRequested", *_STATE_OF, "TakedownIssued", "VideoReinstated"})

    def apply(self, events: Sequence[EventEnvelope], conn: Connection) -> None:
        videos = RowCache(LineageVideo, "video_id", reads=("open_cases",))
        videos.load(conn, to_load((e.stream_id, e.event_type == "GenerationRequested") for e in events))
        cameos: list[dict[str, str]] = []
        for e in events:
            p = e.payload
            if e.event_type == "GenerationRequested":
                videos.create(
                    e.stream_id,
                    parent_id=p["remix_of"],
                    creator_id=p["creator_id"],
                    prompt=p["prompt"],
                    seed=p["seed"],
                    parameters=p["parameters"],
                    state="requested",
                    requested_at=e.occurred_at,
                    updated_at=e.occurred_at,
                    block_reasons=[],
                    open_cases=[],
                )
                cameos += [
                    {"video_id": e.stream_id, "cameo_id": c["cameo_id"], "grant_id": c["grant_id"]} for c in p["cameos"]
                ]
                continue
            changes: dict[str, object] = {"updated_at": e.occurred_at}
            if e.event_type in _STATE_OF:
                changes["state"] = _STATE_OF[e.event_type]
            if e.event_type == "VideoRendered":
                changes.update(rendered=p, content_sha256=p["content_sha256"], blob_uri=p["blob_uri"])
            elif e.event_type == "ModerationDecided":
                changes["moderation"] = p
            elif e.event_type == "VideoPublished":  # the grant that covered each likeness when it went out
                cameos += [
                    {"video_id": e.stream_id, "cameo_id": c["cameo_id"], "grant_id": c["grant_id"]}
                    for c in p.get("consent_checked", [])
                ]
            elif e.event_type == "VideoSigned":
                binding = p["soft_binding"]
                changes.update(
                    signature=p,
                    signed_sha256=p["signed_sha256"],
                    manifest_id=p["manifest_id"],
                    soft_binding=f"{binding['alg']}:{binding['value']}",
                )
            elif e.event_type in ("VideoBlocked", "RenderFailed"):
                changes.update(block_gate=p.get("gate", "render"), block_reasons=p.get("reasons") or [p.get("reason")])
            elif e.event_type in ("TakedownIssued", "VideoReinstated"):
                row = videos.get(e.stream_id)
                cases = set(row["open_cases"] or []) if row else set()
                (cases.add if e.event_type == "TakedownIssued" else cases.discard)(p["case_id"])
                changes.update(open_cases=sorted(cases), taken_down=bool(cases))
            videos.update(e.stream_id, **changes)
        videos.flush(conn)
        upsert(conn, table_of(LineageCameo), cameos, ["video_id", "cameo_id"])  # in order: the latest grant stays
