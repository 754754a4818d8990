"""People and cameos: `person`, `follow`, `cameo register|grant|revoke|erase|videos`."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from provenance.cli import render
from provenance.cli.handlers.common import parse_expiry, person_id, read_file, show
from provenance.cli.render import safe
from provenance.reference_check import MAX_REFERENCE_BYTES

if TYPE_CHECKING:
    from provenance.bootstrap import System


def person_add(system: System, args: argparse.Namespace) -> int:
    roles = ["member", *(["trust_and_safety"] if args.trust_and_safety else [])]
    print(system.app.register_person(args.handle, args.name or "", roles, command_id=args.command_id))
    return 0


def follow(system: System, args: argparse.Namespace) -> int:
    actor, whom = person_id(system, args.actor), person_id(system, args.whom)
    (system.app.unfollow if args.stop else system.app.follow)(actor, whom, command_id=args.command_id)
    return 0


def cameo_register(system: System, args: argparse.Namespace) -> int:
    cameo_id = system.app.register_cameo(
        person_id(system, args.actor), read_file(args.image, MAX_REFERENCE_BYTES), command_id=args.command_id
    )
    print(cameo_id)
    held = system.verify_cameo(cameo_id)
    if held is not None:  # registered (on record), but it grants nothing until trust and safety decides
        print(f"provenance: cameo {cameo_id} is held for a trust-and-safety review: {safe(held)}", file=sys.stderr)
    return 0


def cameo_review(system: System, args: argparse.Namespace) -> int:
    """Trust and safety clears or rejects a cameo held as a possible impersonation."""
    actor = person_id(system, args.actor)
    system.app.review_cameo(args.cameo, actor, args.decision, args.statement, command_id=args.command_id)
    system.catch_up()
    print(f"cameo {args.cameo} {args.decision}")
    return 0


def cameo_grant(system: System, args: argparse.Namespace) -> int:
    grant_id = system.app.grant_consent(
        person_id(system, args.actor),
        args.cameo,
        args.audience,
        grantees=[person_id(system, h) for h in args.to or []],
        scope=args.scope or ["generate", "remix"],
        expires_at=parse_expiry(args.expires),
        command_id=args.command_id,
    )
    system.catch_up()
    print(grant_id)
    return 0


def cameo_revoke(system: System, args: argparse.Namespace) -> int:
    outcome = system.app.revoke_consent(
        person_id(system, args.actor), args.cameo, args.grant, args.reason, command_id=args.command_id
    )
    return _show_revocation(system, args, outcome)


def cameo_unapprove(system: System, args: argparse.Namespace) -> int:
    actor, person = person_id(system, args.actor), person_id(system, args.person)
    outcome = system.app.remove_grantee(actor, args.cameo, args.grant, person, command_id=args.command_id)
    return _show_revocation(system, args, outcome)


def _show_revocation(system: System, args: argparse.Namespace, outcome: Any) -> int:
    system.catch_up()
    show(args, render.revocation_json(outcome), lambda: render.render_revocation(outcome))
    return 0


def cameo_erase(system: System, args: argparse.Namespace) -> int:
    system.app.erase_cameo(person_id(system, args.actor), args.cameo, args.reason, command_id=args.command_id)
    system.catch_up()
    print(f"erased the likeness data of cameo {args.cameo} (its key was destroyed)")
    return 0


def cameo_videos(system: System, args: argparse.Namespace) -> int:
    rows = render.cameo_video_rows(system.app.videos_with_cameo(person_id(system, args.actor), args.cameo))
    show(args, rows, lambda: render.render_cameo_videos(rows))
    return 0
