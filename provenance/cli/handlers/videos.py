"""A video's life on the write side: `request`, `generate`, `publish`, `takedown`, `appeal`, `reinstate`."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any
from uuid import UUID

from kernel.errors import ProvenanceError
from provenance.cli import render
from provenance.cli.handlers.common import emit, person_id

if TYPE_CHECKING:
    from provenance.bootstrap import System


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
    video_id = _request_video(system, args)
    print(f"requested {video_id}; rendering…", file=sys.stderr)
    system.pipeline(system.gate_workers(render=True)).run_until_idle()
    video = system.app.video(video_id)
    if video.rendered is None:
        raise ProvenanceError(f"video {video_id} was not rendered: {'; '.join(video.block_reasons) or video.state}")
    from kernel.blobstore import export

    print(export(system.blobs, video.rendered.blob_uri, system.settings.home / "videos" / f"{video_id}.mp4"))
    return 0


def publish(system: System, args: argparse.Namespace) -> int:
    outcome = system.app.publish(args.video, actor=str(person_id(system, args.actor)), command_id=args.command_id)
    system.catch_up()
    if not outcome.published:
        raise ProvenanceError(f"video {args.video} was blocked at publish: {'; '.join(outcome.reasons)}")
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
