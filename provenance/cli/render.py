"""Text the command line prints: pure functions from what the system returns to lines, and the JSON printer.

Nothing here reads from the system or writes anywhere except `print_json`; a handler asks the system, hands
the answer to a renderer and prints the lines it gets back. The demo prints verification reports and traces
with the same functions.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from kernel.text import BIDI_CONTROLS, written_out

_CONTROL = {c: f"\\x{c:02x}" for c in [*range(0x20), 0x7F]} | {0x0A: "\\n", 0x0D: "\\r", 0x09: "\\t"}
_CONTROL |= written_out([*range(0x80, 0xA0), 0x2028, 0x2029, *BIDI_CONTROLS])


def safe(text: str) -> str:
    """Text fit for a terminal: control characters, line breaks and bidirectional overrides escaped, so a
    statement of reasons or a handle cannot forge lines, colour the screen or reorder what is shown."""
    return text.translate(_CONTROL)


def to_json(data: Any) -> str:
    """What `--json` prints: indented, in the order the system gave, anything unknown as its `str`."""
    return json.dumps(data, indent=2, sort_keys=False, default=str)


def print_json(data: Any) -> None:
    print(to_json(data))


# --- people and cameos -----------------------------------------------------------------------------------


def takedown_line(record: Any) -> str:
    return f"taken down {record.video_id} (case {record.case_id}, {record.source})"


def revocation_json(outcome: Any) -> dict[str, Any]:
    return {
        "grant_id": outcome.grant_id,
        "takedowns": [t.__dict__ for t in outcome.takedowns],
        "blocked": outcome.blocked,
    }


def render_revocation(outcome: Any) -> list[str]:
    lines = [f"revoked {outcome.grant_id}: {len(outcome.takedowns)} takedown(s), {len(outcome.blocked)} blocked"]
    lines += [f"  {takedown_line(record)}" for record in outcome.takedowns]
    lines += [f"  blocked {video_id}" for video_id in outcome.blocked]
    return lines


def cameo_video_rows(videos: Iterable[Any]) -> list[dict[str, Any]]:
    return [
        {"video_id": str(v.id), "creator_id": v.creator_id, "state": v.state, "taken_down": v.is_taken_down}
        for v in videos
    ]


def render_cameo_videos(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    lines = []
    for row in rows:
        down = " (taken down)" if row["taken_down"] else ""
        lines.append(f"{row['video_id']}  {row['state']}{down}  by {row['creator_id']}")
    return lines


# --- reading ---------------------------------------------------------------------------------------------


def render_feed(page: Mapping[str, Any]) -> list[str]:
    lines = []
    for item in page["items"]:
        remix = f"  (remix of {item['remix_of']})" if item["remix_of"] else ""
        dev = "  [development model]" if item["development_model"] else ""
        lines.append(f"{item['published_at']}  {item['video_id']}  {item['prompt'][:60]!r}{remix}{dev}")
    if page["next_cursor"]:
        lines.append(f"more: provenance feed --cursor {page['next_cursor']}")
    return lines


def render_audit(trail: Iterable[Mapping[str, Any]]) -> list[str]:
    lines = []
    for entry in trail:
        reason = f"  — {entry['reason']}" if entry["reason"] else ""
        lines.append(
            f"{entry['stream_version']:>4}  {entry['occurred_at']}  {entry['event_type']} v{entry['schema_version']}"
            f"  by {entry['actor_handle'] or entry['actor']}{reason}"
        )
    return lines


def render_trace(trace: dict[str, Any], depth: int = 0) -> list[str]:
    """The trace as an indented tree an auditor reads top to bottom, from this clip back to its origin."""
    pad = "    " * depth
    lines = [f"{pad}video {trace['video_id']}  [{trace['state']}{', TAKEN DOWN' if trace['taken_down'] else ''}]"]
    lines.append(
        f"{pad}├─ requested {trace['requested_at']} by {trace['creator'] or trace['creator_id']}: "
        f"{trace['prompt']!r} (seed {trace['seed']})"
    )
    rendered = trace["rendered"]
    if rendered:
        gen = rendered["generator"]
        lines.append(
            f"{pad}├─ rendered by {gen['name']} {gen['version']} (model {gen['model_hash'][:12]}) "
            f"on {rendered['device']}: {rendered['width']}x{rendered['height']} {rendered['fps']} fps "
            f"{rendered['duration_s']} s, sha256 {rendered['content_sha256'][:16]}…"
        )
    moderation = trace["moderation"]
    if moderation:
        dev = " [DEVELOPMENT MODEL]" if moderation["development_model"] else ""
        lines.append(f"{pad}├─ moderation: {moderation['verdict']}{dev}")
        for c in moderation["classifiers"]:
            spans = ", ".join(f"{s['start_s']:.1f}-{s['end_s']:.1f}s" for s in c["segments"])
            lines.append(
                f"{pad}│    {c['name']} {c['version']} ({c['model_hash'][:12]}): {c['label']} "
                f"score {c['score']:.3f} / threshold {c['threshold']:.3f} -> {c['outcome']}"
                + (f"  at {spans}" if spans else "")
            )
    signature = trace["signature"]
    if signature:
        dev = " [DEVELOPMENT PKI]" if signature["development_pki"] else ""
        lines.append(
            f"{pad}├─ signed by {signature['signer']}{dev}: manifest {signature['manifest_id']},"
            f" file sha256 {signature['signed_sha256'][:16]}…, soft binding {signature['soft_binding']['value']}"
        )
    if trace["blocked"]:
        lines.append(f"{pad}├─ BLOCKED at {trace['blocked']['gate']}: {'; '.join(trace['blocked']['reasons'])}")
    for cameo in trace["cameos"]:
        lines.append(
            f"{pad}├─ cameo {cameo['cameo_id']} under grant {cameo['grant_id']} ({cameo['audience']}): "
            f"consent {cameo['consent'].replace('_', ' ')}"
            + (f" — {cameo['revoke_reason']}" if cameo["revoke_reason"] else "")
        )
    for case in trace["takedowns"]:
        lines.append(
            f"{pad}├─ takedown {case['case_id']} [{case['status']}] {case['issued_at']} by {case['issued_by']}"
            f" ({case['source']}, {case['reason_code']}): {case['statement_of_reasons']}"
        )
    if trace["children"]:
        lines.append(
            f"{pad}├─ remixed by {len(trace['children'])} video(s), {trace['descendants']} descendant(s) in all"
        )
    if trace["parent"]:
        lines.append(f"{pad}└─ remix of:")
        lines += render_trace(trace["parent"], depth + 1)
    else:
        lines.append(f"{pad}└─ origin")
    return lines


# --- moderation ------------------------------------------------------------------------------------------


def render_moderation(payload: Mapping[str, Any]) -> list[str]:
    dev = "  [DEVELOPMENT MODEL]" if payload["development_model"] else ""
    lines = [f"{payload['verdict']}{dev}: {payload['sampled_frames']} frames over {payload['duration_s']:.1f} s"]
    for c in payload["classifiers"]:
        lines.append(f"  {c['name']} {c['label']}: {c['score']:.3f} / {c['threshold']:.3f} -> {c['outcome']}")
    lines += [f"  reason: {reason}" for reason in payload["reasons"]]
    return lines


# --- distributed mode ------------------------------------------------------------------------------------


def parked_json(entries: Iterable[Any]) -> list[dict[str, Any]]:
    return [{**dataclasses.asdict(e), "raw": e.raw.decode("utf-8", "replace")} for e in entries]


def render_parked(entries: Iterable[Any]) -> list[str]:
    return [
        f"{entry.id:>6}  {entry.consumer}  {entry.source}[{entry.partition}]@{entry.position}  {entry.reason}"
        for entry in entries
    ]


def render_replay(results: Iterable[Any]) -> list[str]:
    return [f"{result.id:>6}  {result.status}  {result.detail}" for result in results]


# --- Content Credentials ---------------------------------------------------------------------------------


def render_development_pki(directory: Any) -> list[str]:
    return [
        f"created a DEVELOPMENT-ONLY signing PKI in {directory} (root -> intermediate -> signer)",
        "do not use it for content that leaves this machine: configure PROVENANCE_SIGNING_DIR instead",
    ]


def render_verification(report: dict[str, Any], trusted_anchors: bool) -> list[str]:
    lines = [f"{report['state']}: {report.get('reason') or 'manifest read'}"]
    if not trusted_anchors:
        lines.append("  (no trust anchors configured: nothing can be Trusted; run `provenance pki init` or set them)")
    if report.get("signer"):
        dev = "  [DEVELOPMENT PKI]" if report.get("development_pki") else ""
        lines.append(f"  signer: {report['signer']}{dev}")
    stamp = report.get("time_stamp")
    if stamp:
        trusted = "trusted" if stamp.get("trusted") else "NOT trusted"
        lines.append(f"  time-stamped {stamp.get('time')} by {stamp.get('authority')} ({trusted})")
    for code in report["failures"]:
        lines.append(f"  failure: {code}")
    for ingredient in report["ingredients"]:
        pad = "  " * int(ingredient.get("depth", 1))
        failures = f" ({', '.join(ingredient['failures'])})" if ingredient["failures"] else ""
        claimed = ingredient.get("claimed_video_id")
        named = ingredient.get("video_id") or (f"? (claims {claimed}, not trusted)" if claimed else "?")
        lines.append(f"  {pad}ingredient {named}: {ingredient['state']}{failures}")
    if report["chain_state"] != report["state"]:
        lines.append(f"  chain: {report['chain_state']} (an ingredient does not validate)")
    if report.get("recovered_by"):
        lines.append(f"  video: {report['video_id']} (found by {report['recovered_by']})")
    claimed = report.get("claimed_video_id")
    if claimed and claimed != report.get("video_id"):
        lines.append(f"  claims video {claimed} (not trusted: no status is taken from it)")
    if report.get("conflict"):
        lines.append(f"  CONFLICT: {report['conflict']}")
    if report.get("watermark_error"):
        lines.append(f"  watermark NOT read: {report['watermark_error']} (the frames may show another video)")
    status = report.get("status")
    if status:
        line = f"  status: {status['status']}"
        if status.get("takedown"):
            takedown = status["takedown"]
            line += f" ({takedown['source']}, {takedown['reason_code']}: {takedown['statement_of_reasons']})"
        if status.get("consent_revoked"):
            line += "; consent for a likeness in it was revoked"
        lines.append(line)
    return lines


def review_lines(held: list[dict[str, Any]]) -> list[str]:
    if not held:
        return ["no video is held for review"]
    return [
        f"{row['held_since']}  {row['video_id']}  {row['prompt'][:60]!r}  {'; '.join(row['reasons'])}" for row in held
    ]
