"""A video's life on the write side: `request`, `generate`, `publish`, `takedown`, `appeal`, `reinstate`."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any
from uuid import UUID

from kernel.errors import ProvenanceError, RuleViolation, StageFailed
from provenance.cli import render
from provenance.cli.handlers.common import emit, person_id, show

if TYPE_CHECKING:
    from provenance.bootstrap import System
    from provenance.domain.video import Video


def _request_video(system: System, args: argparse.Namespace) -> UUID:
    parameters: dict[str, Any] = {}
    if args.duration is not None:
        parameters["duration_s"] = args.duration
    if args.fps is not None:
        parameters["fps"] = args.fps
    if args.size is not None:
        parameters["width"], parameters["height"] = args.size
    return system.app.request_generation(
        person_id(system, args.actor),
        args.prompt,
        parameters=parameters,
        seed=args.seed,
        cameo_ids=args.cameo or [],
        remix_of=args.remix_of,
        command_id=args.command_id,
    )


def request(system: System, args: argparse.Namespace) -> int:
    video_id = _request_video(system, args)
    system.catch_up()
    print(video_id)
    return 0


def generate(system: System, args: argparse.Namespace) -> int:
    """Request, render, moderate, watermark and sign, publish: the whole way, here; non-zero unless published."""
    from provenance.domain.ids import new_command_id

    workers = system.gate_workers(render=True, moderate=True, sign=True)  # refuses before recording, e.g. no PKI
    args.command_id = args.command_id or new_command_id()  # chosen here, so a failure can name it to resume with
    video_id = _request_video(system, args)
    print(f"requested {video_id}; rendering, moderating, signing…", file=sys.stderr)
    return _outcome(system, _drive(system, video_id, workers, "generate", args.command_id))


class DriveInterrupted(ProvenanceError):
    """The machine or the setup failed while a video went through the gates: nothing was recorded against it,
    and the same command, with the same command id, takes it on from where it stopped."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def _drive(system: System, video_id: UUID, workers: Any, command: str, command_id: str) -> Video:
    """`system.drive`, with a failure of the infrastructure said in one line, with how to resume."""
    from kernel.errors import InfrastructureFailure
    from provenance.cli import one_line
    from provenance.kafka.errors import TransientFailure, is_transient, storage_failure

    try:
        return system.drive(video_id, workers)
    except Exception as exc:
        storage = storage_failure(exc, system.settings.home)
        outage = not isinstance(exc, InfrastructureFailure) and storage is None and is_transient(exc)
        if not (storage or outage or isinstance(exc, (InfrastructureFailure, TransientFailure, OSError))):
            raise
        if isinstance(exc, ProvenanceError):
            cause = str(exc)
        elif storage is not None:
            cause = f"{storage} ({one_line(exc)})"
        elif outage:
            cause = f"a database cannot be reached or is busy ({one_line(exc)})"
        else:
            cause = one_line(exc)
        try:
            where = f"is still {system.app.video(video_id).state}"
        except Exception:
            where = "stays where it stopped"
        raise DriveInterrupted(
            f"{cause}; video {video_id} {where}, nothing recorded against it: once that is fixed, run the same "
            f"`provenance {command}` with --command-id {command_id} to take it on from there",
            7 if outage or (isinstance(exc, TransientFailure) and storage is None) else 6,
        ) from exc


def review_list(system: System, args: argparse.Namespace) -> int:
    system.catch_up()
    held = system.reads.awaiting_review()
    show(args, held, lambda: render.review_lines(held))
    return 0


def review_decide(system: System, args: argparse.Namespace) -> int:
    """Trust and safety releases (`allow`: signed and published here) or blocks a video held for review."""
    from provenance.domain.ids import new_command_id

    workers = system.gate_workers(sign=True) if args.verdict == "allow" else system.gate_workers()
    video = system.app.video(args.video)
    actor = person_id(system, args.actor)
    args.command_id = args.command_id or new_command_id()
    system.app.decide_review(video.id, actor, args.verdict, args.statement, command_id=args.command_id)
    return _outcome(system, _drive(system, video.id, workers, "review decide", args.command_id))


def _outcome(system: System, video: Video) -> int:
    """Print where a video ended up: the signed file when published; why not, with a non-zero status."""
    from provenance.domain.video import MODERATED, PUBLISHED, RENDER_FAILED

    if video.state == PUBLISHED and video.signature is not None:
        from kernel.blobstore import export

        print(export(system.blobs, video.signature.signed_uri, system.settings.exported_videos / f"{video.id}.mp4"))
        print(f"published {video.id}", file=sys.stderr)
        return 0
    if video.state == MODERATED and video.moderation is not None and video.moderation.verdict == "review":
        reasons = "; ".join(video.moderation.reasons) or "a classifier asked for a person's decision"
        raise RuleViolation(f"video {video.id} is held for review ({reasons}): see `provenance review list`")
    if video.state == RENDER_FAILED:
        raise StageFailed(f"video {video.id} could not be rendered: {'; '.join(video.block_reasons)}")
    raise RuleViolation(f"video {video.id} was {video.state}: {'; '.join(video.block_reasons) or 'no reason given'}")


def publish(system: System, args: argparse.Namespace) -> int:
    outcome = system.app.publish(args.video, actor=str(person_id(system, args.actor)), command_id=args.command_id)
    system.catch_up()
    if not outcome.published:
        raise RuleViolation(f"video {args.video} was blocked at publish: {'; '.join(outcome.reasons)}")
    print(f"published {args.video}")
    return 0


def takedown(system: System, args: argparse.Namespace) -> int:
    records = system.app.take_down(
        args.video,
        person_id(system, args.actor),
        reason_code=args.reason_code,
        statement_of_reasons=args.statement,
        policy_clause=args.policy_clause,
        legal_ground=args.legal_ground,
        source=args.source,
        command_id=args.command_id,
    )
    system.catch_up()
    emit(render.takedown_line(record) for record in records)
    return 0


def appeal(system: System, args: argparse.Namespace) -> int:
    system.app.appeal(args.video, args.case, person_id(system, args.actor), args.grounds, command_id=args.command_id)
    system.catch_up()
    print(f"appealed case {args.case}")
    return 0


def reinstate(system: System, args: argparse.Namespace) -> int:
    system.app.reinstate(
        args.video, args.case, person_id(system, args.actor), args.decision, command_id=args.command_id
    )
    system.catch_up()
    print(f"reinstated {args.video} (case {args.case})")
    return 0
