"""The takedown cascade: a video comes down, and so does every remix below it, each with its own case.

A domain service over `Video` aggregates: it is given a way to load a video and collects every aggregate it
changes, so the caller saves all of them in one transaction (all of the cascade is recorded, or none).
Case ids derive from the command id and the video, so a retried command records nothing twice.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from uuid import UUID

from provenance.domain.ids import derived_id
from provenance.domain.payloads import payload
from provenance.domain.video import IN_FLIGHT, Video
from schemas import events as e


@dataclass(frozen=True)
class TakedownRecord:
    video_id: str
    case_id: str
    source: str


@dataclass(frozen=True)
class Takedown:
    """What a takedown says: the same reasons go on the root's case and, as a cascade, on every remix's."""

    actor: str
    command_id: str
    reason_code: str
    statement: str
    source: str
    automated: bool
    caused_by: e.EventRef | None
    policy_clause: str | None
    legal_ground: str | None


def take_down_tree(
    root: Video, takedown: Takedown, load_video: Callable[[UUID], Video], changed: dict[UUID, Video]
) -> list[TakedownRecord]:
    """Take down `root` and, breadth first, every live descendant; in-flight remixes are blocked.

    Every aggregate changed is put in `changed` (keyed by id), which the caller saves in one transaction. A
    retry of a takedown its command id recorded changes nothing and returns what it recorded; the id used for
    anything else on the root raises `CommandConflict`.
    """
    case_id = derived_id("case", takedown.command_id, root.id)
    issued = _case(takedown, case_id, takedown.source, takedown.automated, takedown.statement, takedown.caused_by)
    if not root.take_down(issued, takedown.actor, command_id=takedown.command_id):
        return _recorded(root, case_id, takedown, load_video)
    changed[root.id] = root
    records = [TakedownRecord(str(root.id), case_id, takedown.source)]
    queue: list[tuple[Video, str]] = [(root, case_id)]
    while queue:
        parent, parent_case = queue.pop(0)
        parent_id = str(parent.id)
        cause = e.EventRef(event_id=parent.cases[parent_case].event_id, stream_id=parent_id)
        why = f"Remix of video {parent_id}, which was taken down (case {parent_case}): {takedown.statement}"
        for child_uid in parent.children:
            child = changed.get(child_uid) or load_video(child_uid)
            if child.state in IN_FLIGHT:
                blocked = e.VideoBlocked(gate="consent", reasons=[why], caused_by=cause)
                if child.block(blocked, takedown.actor, command_id=takedown.command_id):
                    changed[child.id] = child
                continue
            if not child.is_live:
                continue
            child_id = str(child_uid)
            child_case = derived_id("case", takedown.command_id, child_id)
            cascade = _case(takedown, child_case, "cascade", True, why[:5000], cause)
            child.take_down(cascade, takedown.actor, command_id=takedown.command_id)
            changed[child_uid] = child
            records.append(TakedownRecord(child_id, child_case, "cascade"))
            queue.append((child, child_case))
    return records


def _recorded(
    root: Video, case_id: str, takedown: Takedown, load_video: Callable[[UUID], Video]
) -> list[TakedownRecord]:
    """The cases a takedown's command recorded: the root's, and every cascade case below it."""
    records = [TakedownRecord(str(root.id), case_id, takedown.source)]
    queue = [root]
    while queue:
        parent = queue.pop(0)
        for child_uid in parent.children:
            child = load_video(child_uid)
            child_case = derived_id("case", takedown.command_id, str(child_uid))
            if child_case in child.cases:
                records.append(TakedownRecord(str(child_uid), child_case, "cascade"))
                queue.append(child)
    return records


def _case(
    takedown: Takedown, case_id: str, source: str, automated: bool, statement: str, caused_by: e.EventRef | None
) -> e.TakedownIssued:
    return payload(
        e.TakedownIssued,
        case_id=case_id,
        reason_code=takedown.reason_code,
        policy_clause=takedown.policy_clause,
        legal_ground=takedown.legal_ground,
        source=source,
        automated=automated,
        statement_of_reasons=statement,
        caused_by=caused_by,
    )
