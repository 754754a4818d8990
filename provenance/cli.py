"""`provenance`: the command line of the system.

Errors a user can act on are printed as one line on stderr with a non-zero exit status (2: bad input,
3: unknown id, 4: a rule refused the command, 5: a missing optional dependency); anything else is a bug
and keeps its traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

from provenance.errors import InvalidInput, ProvenanceError
from provenance.system import System

Handler = Callable[[System, argparse.Namespace], int]
_COMMANDS: dict[str, Handler] = {}


def command(name: str) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        _COMMANDS[name] = handler
        return handler

    return register


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    system: System | None = None
    try:
        system = System()
        return _COMMANDS[args.handler](system, args)
    except ProvenanceError as exc:
        print(f"provenance: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("provenance: interrupted", file=sys.stderr)
        return 130
    finally:
        if system is not None:
            system.close()


# --- helpers ---------------------------------------------------------------------------------------------


def _person(system: System, handle: str) -> UUID:
    return system.app.person_by_handle(handle).id


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, sort_keys=False, default=str))


def _parse_expiry(text: str | None) -> datetime | None:
    """An ISO 8601 time, or a duration from now such as `30m`, `12h` or `7d`."""
    if not text:
        return None
    match = re.fullmatch(r"\+?(\d+)([smhd])", text.strip())
    if match:
        amount, unit = int(match.group(1)), match.group(2)
        seconds = amount * {"s": 1, "m": 60, "h": 3600, "d": 86400}[unit]
        return datetime.now(UTC) + timedelta(seconds=seconds)
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput(f"--expires must be an ISO 8601 time or a duration like 7d, not {text!r}") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _size(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"(\d+)x(\d+)", text)
    if not match:
        raise argparse.ArgumentTypeError(f"size must look like 576x1024, not {text!r}")
    return int(match.group(1)), int(match.group(2))


def _read_file(path: str) -> bytes:
    file = Path(path)
    if not file.is_file():
        raise InvalidInput(f"no such file: {path}")
    return file.read_bytes()


# --- people and cameos -----------------------------------------------------------------------------------


@command("person-add")
def _person_add(system: System, args: argparse.Namespace) -> int:
    roles = ["member", *(["trust_and_safety"] if args.trust_and_safety else [])]
    person_id = system.app.register_person(args.handle, args.name or "", roles, command_id=args.command_id)
    print(person_id)
    return 0


@command("follow")
def _follow(system: System, args: argparse.Namespace) -> int:
    actor, whom = _person(system, args.actor), _person(system, args.whom)
    (system.app.unfollow if args.stop else system.app.follow)(actor, whom, command_id=args.command_id)
    return 0


@command("cameo-register")
def _cameo_register(system: System, args: argparse.Namespace) -> int:
    cameo_id = system.app.register_cameo(
        _person(system, args.actor), _read_file(args.image), command_id=args.command_id
    )
    system.catch_up()
    print(cameo_id)
    return 0


@command("cameo-grant")
def _cameo_grant(system: System, args: argparse.Namespace) -> int:
    grant_id = system.app.grant_consent(
        _person(system, args.actor),
        args.cameo,
        args.audience,
        grantees=[_person(system, h) for h in args.to or []],
        scope=args.scope or ["generate", "remix"],
        expires_at=_parse_expiry(args.expires),
        command_id=args.command_id,
    )
    system.catch_up()
    print(grant_id)
    return 0


@command("cameo-revoke")
def _cameo_revoke(system: System, args: argparse.Namespace) -> int:
    outcome = system.app.revoke_consent(
        _person(system, args.actor), args.cameo, args.grant, args.reason, command_id=args.command_id
    )
    system.catch_up()
    if args.json:
        _print_json(
            {
                "grant_id": outcome.grant_id,
                "takedowns": [t.__dict__ for t in outcome.takedowns],
                "blocked": outcome.blocked,
            }
        )
    else:
        print(f"revoked {outcome.grant_id}: {len(outcome.takedowns)} takedown(s), {len(outcome.blocked)} blocked")
        for record in outcome.takedowns:
            print(f"  taken down {record.video_id} (case {record.case_id}, {record.source})")
        for video_id in outcome.blocked:
            print(f"  blocked {video_id}")
    return 0


@command("cameo-erase")
def _cameo_erase(system: System, args: argparse.Namespace) -> int:
    system.app.erase_cameo(_person(system, args.actor), args.cameo, args.reason, command_id=args.command_id)
    system.catch_up()
    print(f"erased the likeness data of cameo {args.cameo} (its key was destroyed)")
    return 0


@command("cameo-videos")
def _cameo_videos(system: System, args: argparse.Namespace) -> int:
    videos = system.app.videos_with_cameo(_person(system, args.actor), args.cameo)
    rows = [
        {"video_id": str(v.id), "creator_id": v.creator_id, "state": v.state, "taken_down": v.is_taken_down}
        for v in videos
    ]
    if args.json:
        _print_json(rows)
    else:
        for row in rows:
            down = " (taken down)" if row["taken_down"] else ""
            print(f"{row['video_id']}  {row['state']}{down}  by {row['creator_id']}")
    return 0


# --- videos ----------------------------------------------------------------------------------------------


def _request_video(system: System, args: argparse.Namespace) -> UUID:
    parameters: dict[str, Any] = {}
    if args.duration is not None:
        parameters["duration_s"] = args.duration
    if args.fps is not None:
        parameters["fps"] = args.fps
    if args.size is not None:
        parameters["width"], parameters["height"] = args.size
    return system.app.request_generation(
        _person(system, args.actor),
        args.prompt,
        parameters=parameters,
        seed=args.seed,
        cameo_ids=args.cameo or [],
        remix_of=args.remix_of,
        command_id=args.command_id,
    )


@command("request")
def _request(system: System, args: argparse.Namespace) -> int:
    video_id = _request_video(system, args)
    system.catch_up()
    print(video_id)
    return 0


@command("generate")
def _generate(system: System, args: argparse.Namespace) -> int:
    from provenance.gates import GateWorkers
    from provenance.stages import GeneratorStage

    video_id = _request_video(system, args)
    print(f"requested {video_id}; rendering…", file=sys.stderr)
    workers = GateWorkers(system.app, render=GeneratorStage(system.app.blobs))
    system.pipeline(workers).run_until_idle()
    video = system.app.video(video_id)
    if video.rendered is None:
        raise ProvenanceError(f"video {video_id} was not rendered: {'; '.join(video.block_reasons) or video.state}")
    from provenance.blobstore import export

    print(export(system.app.blobs, video.rendered["blob_uri"], system.settings.home / "videos" / f"{video_id}.mp4"))
    return 0


@command("publish")
def _publish(system: System, args: argparse.Namespace) -> int:
    outcome = system.app.publish(args.video, actor=str(_person(system, args.actor)), command_id=args.command_id)
    system.catch_up()
    if not outcome.published:
        raise ProvenanceError(f"video {args.video} was blocked at publish: {'; '.join(outcome.reasons)}")
    print(f"published {args.video}")
    return 0


@command("takedown")
def _takedown(system: System, args: argparse.Namespace) -> int:
    records = system.app.take_down(
        args.video,
        _person(system, args.actor),
        reason_code=args.reason_code,
        statement_of_reasons=args.statement,
        policy_clause=args.policy_clause,
        legal_ground=args.legal_ground,
        source=args.source,
        command_id=args.command_id,
    )
    system.catch_up()
    for record in records:
        print(f"taken down {record.video_id} (case {record.case_id}, {record.source})")
    return 0


@command("appeal")
def _appeal(system: System, args: argparse.Namespace) -> int:
    system.app.appeal(args.video, args.case, _person(system, args.actor), args.grounds, command_id=args.command_id)
    system.catch_up()
    print(f"appealed case {args.case}")
    return 0


@command("reinstate")
def _reinstate(system: System, args: argparse.Namespace) -> int:
    system.app.reinstate(args.video, args.case, _person(system, args.actor), args.decision, command_id=args.command_id)
    system.catch_up()
    print(f"reinstated {args.video} (case {args.case})")
    return 0


# --- reading ---------------------------------------------------------------------------------------------


@command("feed")
def _feed(system: System, args: argparse.Namespace) -> int:
    system.catch_up()
    page = system.reads.feed(limit=args.limit, cursor=args.cursor)
    if args.json:
        _print_json(page)
        return 0
    for item in page["items"]:
        remix = f"  (remix of {item['remix_of']})" if item["remix_of"] else ""
        dev = "  [development model]" if item["development_model"] else ""
        print(f"{item['published_at']}  {item['video_id']}  {item['prompt'][:60]!r}{remix}{dev}")
    if page["next_cursor"]:
        print(f"more: provenance feed --cursor {page['next_cursor']}")
    return 0


@command("trace")
def _trace(system: System, args: argparse.Namespace) -> int:
    system.catch_up()
    trace = system.reads.trace(args.video)
    if args.json:
        _print_json(trace)
    else:
        print("\n".join(render_trace(trace)))
    return 0


@command("audit")
def _audit(system: System, args: argparse.Namespace) -> int:
    system.catch_up()
    trail = system.reads.audit_trail(args.stream)
    if args.json:
        _print_json(trail)
        return 0
    for entry in trail:
        reason = f"  — {entry['reason']}" if entry["reason"] else ""
        print(
            f"{entry['stream_version']:>4}  {entry['occurred_at']}  {entry['event_type']} v{entry['schema_version']}"
            f"  by {entry['actor_handle'] or entry['actor']}{reason}"
        )
    return 0


@command("rebuild")
def _rebuild(system: System, args: argparse.Namespace) -> int:
    from provenance.rebuild import rebuild

    names = args.projection or list(system.store.projections)
    unknown = set(names) - set(system.store.projections)
    if unknown:
        raise InvalidInput(
            f"unknown projection(s): {', '.join(sorted(unknown))} (known: {', '.join(system.store.projections)})"
        )
    count, seconds = rebuild(system, names, progress=not args.quiet)
    print(f"rebuilt {', '.join(names)} from {count} events in {seconds:.2f} s")
    return 0


@command("demo")
def _demo(system: System, args: argparse.Namespace) -> int:
    from provenance.demo import run_demo

    return run_demo(Path(args.out))


# --- moderation ------------------------------------------------------------------------------------------


def _moderator_config(system: System, policy: str | None) -> Any:
    from provenance.stages import moderator_config

    return moderator_config(system.settings, Path(policy) if policy else None)


@command("moderate")
def _moderate(system: System, args: argparse.Namespace) -> int:
    from moderation.config import ModerationContext
    from moderation.moderator import load_moderator

    config = _moderator_config(system, args.policy)
    decision = load_moderator(config).moderate_video(Path(args.file), ModerationContext(config=config))
    payload = decision.to_payload()
    if args.json:
        _print_json(payload)
    else:
        dev = "  [DEVELOPMENT MODEL]" if payload["development_model"] else ""
        print(f"{payload['verdict']}{dev}: {payload['sampled_frames']} frames over {payload['duration_s']:.1f} s")
        for c in payload["classifiers"]:
            print(f"  {c['name']} {c['label']}: {c['score']:.3f} / {c['threshold']:.3f} -> {c['outcome']}")
        for reason in payload["reasons"]:
            print(f"  reason: {reason}")
    return {"allow": 0, "review": 10, "block": 11}[payload["verdict"]]


def _backbone(system: System) -> Any:
    from moderation.backbone import load_backbone

    return load_backbone(_moderator_config(system, None).backbone)


@command("moderation-train")
def _moderation_train(system: System, args: argparse.Namespace) -> int:
    from moderation.training import train_head

    report = train_head(
        Path(args.folder), Path(args.out), _backbone(system), positive_label=args.positive, show_progress=True
    )
    print(report.render())
    return 0


@command("moderation-eval")
def _moderation_eval(system: System, args: argparse.Namespace) -> int:
    from moderation.training import evaluate

    report = evaluate(
        Path(args.folder),
        _backbone(system),
        head=Path(args.head) if args.head else None,
        policy=Path(args.policy) if args.policy else None,
        category=args.category,
        threshold=args.threshold,
        target_precision=args.target_precision,
        show_progress=True,
    )
    print(report.render())
    return 0


# --- distributed mode ------------------------------------------------------------------------------------


@command("serve")
def _serve(system: System, args: argparse.Namespace) -> int:
    import logging

    from provenance.serve import serve

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(threadName)s %(levelname)s %(message)s")
    return serve(system, args.role)


@command("parked-list")
def _parked_list(system: System, args: argparse.Namespace) -> int:
    from provenance.kafka.roles import list_parked

    entries = list_parked(system.settings, args.consumer, include_replayed=args.all)
    if args.json:
        _print_json([{**dataclasses.asdict(e), "raw": e.raw.decode("utf-8", "replace")} for e in entries])
        return 0
    for entry in entries:
        print(f"{entry.id:>6}  {entry.consumer}  {entry.source}[{entry.partition}]@{entry.position}  {entry.reason}")
    return 0


@command("parked-replay")
def _parked_replay(system: System, args: argparse.Namespace) -> int:
    from provenance.kafka.roles import replay_parked
    from provenance.serve import worker_handler

    handler = None if args.consumer == "projections" else worker_handler(system, args.consumer)
    results = replay_parked(system.settings, args.consumer, ids=args.id or None, handler=handler)
    for result in results:
        print(f"{result.id:>6}  {result.status}  {result.detail}")
    return 0 if all(r.status != "failed" for r in results) else 1


# --- Content Credentials ---------------------------------------------------------------------------------


@command("pki-init")
def _pki_init(system: System, args: argparse.Namespace) -> int:
    from provenance.credentials.pki import create_development_pki

    directory = Path(args.dir) if args.dir else system.settings.pki_directory
    create_development_pki(directory, overwrite=args.force)
    print(f"created a DEVELOPMENT-ONLY signing PKI in {directory} (root -> intermediate -> signer)")
    print("do not use it for content that leaves this machine: configure PROVENANCE_SIGNING_DIR instead")
    return 0


def _trust(system: System) -> Any:
    from provenance.credentials.pki import TrustConfig

    anchors = system.settings.trust_anchor_file
    return TrustConfig(anchor_files=(anchors,)) if anchors.is_file() else None


@command("verify")
def _verify(system: System, args: argparse.Namespace) -> int:
    from provenance.credentials.verify import verify_file
    from provenance.verification import ReadModelStatus

    system.catch_up()
    trust = _trust(system)
    report = verify_file(Path(args.file), trust, ReadModelStatus(system.reads)).to_json()
    if args.json:
        _print_json(report)
    else:
        print("\n".join(render_verification(report, trusted_anchors=trust is not None)))
    return 0 if report["chain_state"] == "Trusted" else 1


def render_verification(report: dict[str, Any], trusted_anchors: bool) -> list[str]:
    lines = [f"{report['state']}: {report.get('reason') or 'manifest read'}"]
    if not trusted_anchors:
        lines.append("  (no trust anchors configured: nothing can be Trusted; run `provenance pki init` or set them)")
    if report.get("signer"):
        dev = "  [DEVELOPMENT PKI]" if report.get("development_pki") else ""
        lines.append(f"  signer: {report['signer']}{dev}")
    for code in report["failures"]:
        lines.append(f"  failure: {code}")
    for ingredient in report["ingredients"]:
        pad = "  " * int(ingredient.get("depth", 1))
        failures = f" ({', '.join(ingredient['failures'])})" if ingredient["failures"] else ""
        lines.append(f"  {pad}ingredient {ingredient.get('video_id') or '?'}: {ingredient['state']}{failures}")
    if report["chain_state"] != report["state"]:
        lines.append(f"  chain: {report['chain_state']} (an ingredient does not validate)")
    if report.get("recovered_by"):
        lines.append(f"  video: {report['video_id']} (found by {report['recovered_by']})")
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


@command("resolve")
def _resolve(system: System, args: argparse.Namespace) -> int:
    from provenance.credentials.resolution import ManifestResolver
    from provenance.verification import ReadModelManifestIndex

    system.catch_up()
    resolver = ManifestResolver(ReadModelManifestIndex(system.reads), system.app.blobs, _trust(system))
    if args.manifest:
        out = Path(args.output or f"{args.manifest.replace(':', '_')}.c2pa")
        out.write_bytes(resolver.manifest(args.manifest))
        print(out)
        return 0
    if args.binding:
        alg, _, value = args.binding.partition(":")
        matches = resolver.matches_by_binding(alg, value)
    elif args.file:
        matches = resolver.matches_by_content(Path(args.file))
    else:
        raise InvalidInput("give a FILE, --binding ALG:VALUE or --manifest ID")
    _print_json(matches.to_json())
    return 0


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
            f"consent {cameo['consent']}" + (f" — {cameo['revoke_reason']}" if cameo["revoke_reason"] else "")
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


# --- parser ----------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="provenance", description="Event-sourced provenance and moderation for AI-generated video."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def add(name: str, handler: str, help_text: str, parent: Any = sub) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = parent.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(handler=handler)
        return p

    def with_command_id(p: argparse.ArgumentParser) -> None:
        p.add_argument("--command-id", help="id that makes a retry of this command a no-op")

    def with_actor(p: argparse.ArgumentParser) -> None:
        p.add_argument("--as", dest="actor", required=True, metavar="HANDLE", help="who is acting")

    p = add("person", "person-add", "register a person")
    p.add_argument("handle")
    p.add_argument("--name")
    p.add_argument("--trust-and-safety", action="store_true", help="give the person the trust and safety role")
    with_command_id(p)

    p = add("follow", "follow", "follow (or with --stop, unfollow) someone; mutual follows make mutuals")
    p.add_argument("whom", metavar="HANDLE")
    p.add_argument("--stop", action="store_true")
    with_actor(p)
    with_command_id(p)

    cameo = sub.add_parser("cameo", help="cameos (likenesses) and their consent").add_subparsers(
        dest="cameo_command", metavar="ACTION", required=True
    )
    p = add("register", "cameo-register", "register your likeness from a reference image", cameo)
    p.add_argument("image", help="reference image file (a face)")
    with_actor(p)
    with_command_id(p)
    p = add("grant", "cameo-grant", "grant consent to use a cameo", cameo)
    p.add_argument("cameo")
    p.add_argument("--audience", required=True, choices=["only_me", "approved", "mutuals", "everyone"])
    p.add_argument("--to", action="append", metavar="HANDLE", help="grantee, for --audience approved (repeat)")
    p.add_argument("--scope", action="append", choices=["generate", "remix"], help="default: both")
    p.add_argument("--expires", help="ISO 8601 time or a duration such as 7d")
    with_actor(p)
    with_command_id(p)
    p = add("revoke", "cameo-revoke", "revoke a grant: takes down every video that loses its consent", cameo)
    p.add_argument("cameo")
    p.add_argument("grant")
    p.add_argument("--reason", required=True)
    p.add_argument("--json", action="store_true")
    with_actor(p)
    with_command_id(p)
    p = add("erase", "cameo-erase", "erase the likeness data (destroys its key)", cameo)
    p.add_argument("cameo")
    p.add_argument("--reason", required=True)
    with_actor(p)
    with_command_id(p)
    p = add("videos", "cameo-videos", "every video that uses your cameo", cameo)
    p.add_argument("cameo")
    p.add_argument("--json", action="store_true")
    with_actor(p)

    def add_request_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--prompt", required=True)
        p.add_argument("--cameo", action="append", metavar="CAMEO_ID")
        p.add_argument("--seed", type=int)
        p.add_argument("--remix-of", metavar="VIDEO_ID")
        p.add_argument("--duration", type=float, help="seconds, default 4")
        p.add_argument("--fps", type=int, help="default 24")
        p.add_argument("--size", type=_size, help="WIDTHxHEIGHT, default 576x1024")
        with_actor(p)
        with_command_id(p)

    p = add("request", "request", "record a generation request (consent is checked now)")
    add_request_options(p)

    p = add("generate", "generate", "request a video and render it here; prints the path of the file")
    add_request_options(p)

    p = add("publish", "publish", "publish a signed video (consent is re-checked)")
    p.add_argument("video")
    with_actor(p)
    with_command_id(p)

    p = add("takedown", "takedown", "take a video (and its remixes) down, with a statement of reasons")
    p.add_argument("video")
    p.add_argument("--reason-code", required=True)
    p.add_argument("--statement", required=True, help="statement of reasons")
    p.add_argument("--policy-clause")
    p.add_argument("--legal-ground")
    p.add_argument("--source", choices=["notice", "own_initiative"])
    with_actor(p)
    with_command_id(p)

    p = add("appeal", "appeal", "appeal a takedown of your video")
    p.add_argument("video")
    p.add_argument("case")
    p.add_argument("--grounds", required=True)
    with_actor(p)
    with_command_id(p)

    p = add("reinstate", "reinstate", "reinstate a video, closing a takedown case")
    p.add_argument("video")
    p.add_argument("case")
    p.add_argument("--decision", required=True)
    with_actor(p)
    with_command_id(p)

    p = add("feed", "feed", "the feed, newest first")
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--cursor")
    p.add_argument("--json", action="store_true")

    p = add("trace", "trace", "a clip's origin: lineage, cameos and consent, moderation, signature, takedowns")
    p.add_argument("video")
    p.add_argument("--json", action="store_true")

    p = add("audit", "audit", "every event of a video, cameo or person, in order")
    p.add_argument("stream", metavar="ID")
    p.add_argument("--json", action="store_true")

    p = add("demo", "demo", "run the whole pipeline on the embedded default, with development models")
    p.add_argument("--out", default="provenance-demo", help="directory for everything it makes (default: %(default)s)")

    p = add(
        "moderate", "moderate", "run the moderation classifiers on any video file (exit 0 allow, 10 review, 11 block)"
    )
    p.add_argument("file")
    p.add_argument("--policy", help="policy file (default: the shipped policy for the mode)")
    p.add_argument("--json", action="store_true")

    moderation = sub.add_parser("moderation", help="train and evaluate classifiers").add_subparsers(
        dest="moderation_command", metavar="ACTION", required=True
    )
    p = add("train", "moderation-train", "fit a linear head on CLIP embeddings from a labelled folder", moderation)
    p.add_argument("folder", help="one subfolder per label, holding images or videos")
    p.add_argument("--positive", required=True, help="the label the head detects")
    p.add_argument("--out", required=True, help="head file to write (.safetensors)")
    p = add("eval", "moderation-eval", "precision, recall and confusion matrix on a labelled folder", moderation)
    p.add_argument("folder")
    p.add_argument("--head")
    p.add_argument("--policy")
    p.add_argument("--category")
    p.add_argument("--threshold", type=float)
    p.add_argument("--target-precision", type=float, default=0.95)

    from provenance.kafka import ROLES

    p = add("serve", "serve", "run roles of the distributed mode (Kafka, PostgreSQL) until SIGTERM")
    p.add_argument("--role", action="append", required=True, choices=ROLES, help="repeat to run several")

    parked = sub.add_parser("parked", help="events a consumer could not handle").add_subparsers(
        dest="parked_command", metavar="ACTION", required=True
    )
    p = add("list", "parked-list", "list parked events with the reason", parked)
    p.add_argument("--consumer")
    p.add_argument("--all", action="store_true", help="include replayed ones")
    p.add_argument("--json", action="store_true")
    p = add("replay", "parked-replay", "replay parked events once their cause is fixed", parked)
    p.add_argument("consumer", help="projections, generator, moderation or signing")
    p.add_argument("--id", type=int, action="append", help="only these (repeat)")

    pki = sub.add_parser("pki", help="signing identities").add_subparsers(
        dest="pki_command", metavar="ACTION", required=True
    )
    p = add("init", "pki-init", "create a DEVELOPMENT-ONLY signing PKI (root, intermediate, signer)", pki)
    p.add_argument("--dir", help="default: $PROVENANCE_HOME/pki")
    p.add_argument("--force", action="store_true", help="replace an existing one")

    p = add("verify", "verify", "verify a file's Content Credentials and report the video's current status")
    p.add_argument("file")
    p.add_argument("--json", action="store_true")

    p = add("resolve", "resolve", "find manifests by soft binding or by content (C2PA soft-binding resolution)")
    p.add_argument("file", nargs="?")
    p.add_argument("--binding", metavar="ALG:VALUE")
    p.add_argument("--manifest", metavar="ID", help="fetch a stored manifest store by id")
    p.add_argument("--output", help="where to write the fetched manifest store")

    p = add("rebuild", "rebuild", "drop projections and replay them from the log")
    p.add_argument("projection", nargs="*", help="feed, lineage, consent, audit, takedowns (default: all)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")

    return parser


if __name__ == "__main__":
    sys.exit(main())
