"""The argument parser of `provenance`: every subcommand, its options, and the handler it runs.

Each subcommand is bound to its handler function here and only here (`set_defaults(handler=...)`), so a
misspelt handler fails when the parser is built, not when someone runs the command.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from provenance.cli.handlers import access, credentials, moderation, operations, people, reading, videos

if TYPE_CHECKING:
    from provenance.bootstrap import System

SCOPES = ("read", "write", "verify", "fetch:manifests", "admin")
"""The scopes of `provenance.api.accounts`, named here so that building the parser imports nothing heavy."""

Handler = Callable[["System", argparse.Namespace], int]
"""What a subcommand runs: it gets the system and the parsed arguments and returns the exit status."""


def size(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"(\d+)x(\d+)", text)
    if not match:
        raise argparse.ArgumentTypeError(f"size must look like 576x1024, not {text!r}")
    return int(match.group(1)), int(match.group(2))


def with_command_id(p: argparse.ArgumentParser) -> None:
    p.add_argument("--command-id", help="id that makes a retry of this command a no-op")


def with_actor(p: argparse.ArgumentParser) -> None:
    p.add_argument("--as", dest="actor", required=True, metavar="HANDLE", help="who is acting")


def with_request_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--prompt", required=True)
    p.add_argument("--cameo", action="append", metavar="CAMEO_ID")
    p.add_argument("--seed", type=int)
    p.add_argument("--remix-of", metavar="VIDEO_ID")
    p.add_argument("--duration", type=float, help="seconds, default 4")
    p.add_argument("--fps", type=int, help="default 24")
    p.add_argument("--size", type=size, help="WIDTHxHEIGHT, default 576x1024")
    with_actor(p)
    with_command_id(p)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="provenance", description="Event-sourced provenance and moderation for AI-generated video."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def add(name: str, handler: Handler, help_text: str, parent: Any = sub) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = parent.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(handler=handler)
        return p

    def group(name: str, help_text: str) -> Any:
        return sub.add_parser(name, help=help_text).add_subparsers(
            dest=f"{name}_command", metavar="ACTION", required=True
        )

    # --- people and cameos

    p = add("person", people.person_add, "register a person")
    p.add_argument("handle")
    p.add_argument("--name")
    p.add_argument("--trust-and-safety", action="store_true", help="give the person the trust and safety role")
    with_command_id(p)

    p = add("follow", people.follow, "follow (or with --stop, unfollow) someone; mutual follows make mutuals")
    p.add_argument("whom", metavar="HANDLE")
    p.add_argument("--stop", action="store_true")
    with_actor(p)
    with_command_id(p)

    cameo = group("cameo", "cameos (likenesses) and their consent")
    p = add("register", people.cameo_register, "register your likeness from a reference image", cameo)
    p.add_argument("image", help="reference image file (a face)")
    with_actor(p)
    with_command_id(p)
    p = add("unapprove", people.cameo_unapprove, "take a person off a grant's approved list", cameo)
    p.add_argument("cameo")
    p.add_argument("grant")
    p.add_argument("--person", required=True, help="the handle to take off the list")
    p.add_argument("--json", action="store_true")
    with_actor(p)
    with_command_id(p)
    p = add("review", people.cameo_review, "clear or reject a cameo held as a possible impersonation (T&S)", cameo)
    p.add_argument("cameo")
    p.add_argument("decision", choices=["cleared", "rejected"])
    p.add_argument("--statement", required=True, help="the statement of reasons, kept on record")
    with_actor(p)
    with_command_id(p)
    p = add("grant", people.cameo_grant, "grant consent to use a cameo", cameo)
    p.add_argument("cameo")
    p.add_argument("--audience", required=True, choices=["only_me", "approved", "mutuals", "everyone"])
    p.add_argument("--to", action="append", metavar="HANDLE", help="grantee, for --audience approved (repeat)")
    p.add_argument("--scope", action="append", choices=["generate", "remix"], help="default: both")
    p.add_argument("--expires", help="ISO 8601 time or a duration such as 7d")
    with_actor(p)
    with_command_id(p)
    p = add("revoke", people.cameo_revoke, "revoke a grant: takes down every video that loses its consent", cameo)
    p.add_argument("cameo")
    p.add_argument("grant")
    p.add_argument("--reason", required=True)
    p.add_argument("--json", action="store_true")
    with_actor(p)
    with_command_id(p)
    p = add("erase", people.cameo_erase, "erase the likeness data (destroys its key)", cameo)
    p.add_argument("cameo")
    p.add_argument("--reason", required=True)
    with_actor(p)
    with_command_id(p)
    p = add("videos", people.cameo_videos, "every video that uses your cameo", cameo)
    p.add_argument("cameo")
    p.add_argument("--json", action="store_true")
    with_actor(p)

    # --- videos

    p = add("request", videos.request, "record a generation request (consent is checked now)")
    with_request_options(p)

    p = add(
        "generate",
        videos.generate,
        "request a video and take it through every gate here; prints the signed file (non-zero unless published)",
    )
    with_request_options(p)

    review = group("review", "videos the classifiers held for a person's decision")
    p = add("list", videos.review_list, "videos held for review, oldest first", review)
    p.add_argument("--json", action="store_true")
    p = add(
        "decide", videos.review_decide, "release (allow) or block a held video, with reasons (trust and safety)", review
    )
    p.add_argument("video")
    p.add_argument("verdict", choices=["allow", "block"])
    p.add_argument("--statement", required=True, help="the statement of reasons, kept on record")
    with_actor(p)
    with_command_id(p)

    p = add("publish", videos.publish, "publish a signed video (consent is re-checked)")
    p.add_argument("video")
    with_actor(p)
    with_command_id(p)

    p = add("takedown", videos.takedown, "take a video (and its remixes) down, with a statement of reasons")
    p.add_argument("video")
    p.add_argument("--reason-code", required=True)
    p.add_argument("--statement", required=True, help="statement of reasons")
    p.add_argument("--policy-clause")
    p.add_argument("--legal-ground")
    p.add_argument("--source", choices=["notice", "own_initiative"])
    with_actor(p)
    with_command_id(p)

    p = add("appeal", videos.appeal, "appeal a takedown of your video")
    p.add_argument("video")
    p.add_argument("case")
    p.add_argument("--grounds", required=True)
    with_actor(p)
    with_command_id(p)

    p = add("reinstate", videos.reinstate, "reinstate a video, closing a takedown case")
    p.add_argument("video")
    p.add_argument("case")
    p.add_argument("--decision", required=True)
    with_actor(p)
    with_command_id(p)

    # --- reading

    p = add("feed", reading.feed, "the feed, newest first")
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--cursor")
    p.add_argument("--json", action="store_true")

    p = add("trace", reading.trace, "a clip's origin: lineage, cameos and consent, moderation, signature, takedowns")
    p.add_argument("video")
    p.add_argument("--json", action="store_true")

    p = add("audit", reading.audit, "every event of a video, cameo or person, in order")
    p.add_argument("stream", metavar="ID")
    p.add_argument("--json", action="store_true")

    p = add("demo", operations.demo, "run the whole pipeline on the embedded default, with development models")
    p.add_argument("--out", default="provenance-demo", help="directory for everything it makes (default: %(default)s)")

    # --- moderation

    p = add(
        "moderate",
        moderation.moderate,
        "run the moderation classifiers on any video file (exit 0 allow, 10 review, 11 block)",
    )
    p.add_argument("file")
    p.add_argument("--policy", help="policy file (default: the shipped policy for the mode)")
    p.add_argument("--json", action="store_true")

    models = group("moderation", "train and evaluate classifiers")
    p = add("train", moderation.train, "fit a linear head on CLIP embeddings from a labelled folder", models)
    p.add_argument("folder", help="one subfolder per label, holding images or videos")
    p.add_argument("--positive", required=True, help="the label the head detects")
    p.add_argument("--out", required=True, help="head file to write (.safetensors)")
    p = add("eval", moderation.evaluate, "precision, recall and confusion matrix on a labelled folder", models)
    p.add_argument("folder")
    p.add_argument("--head")
    p.add_argument("--policy")
    p.add_argument("--category")
    p.add_argument("--threshold", type=float)
    p.add_argument("--target-precision", type=float, default=0.95)

    # --- distributed mode

    from provenance.kafka import ROLES

    p = add("serve", operations.serve, "run roles of the distributed mode (Kafka, PostgreSQL) until SIGTERM")
    p.add_argument("--role", action="append", required=True, choices=ROLES, help="repeat to run several")

    parked = group("parked", "events a consumer could not handle")
    p = add("list", operations.parked_list, "list parked events with the reason", parked)
    p.add_argument("--consumer")
    p.add_argument("--all", action="store_true", help="include replayed ones")
    p.add_argument("--json", action="store_true")
    p = add("replay", operations.parked_replay, "replay parked events once their cause is fixed", parked)
    p.add_argument("consumer", help="projections, generator, moderation, signing or consent")
    p.add_argument("--id", type=int, action="append", help="only these (repeat)")

    # --- Content Credentials

    pki = group("pki", "signing identities")
    p = add("init", credentials.pki_init, "create a DEVELOPMENT-ONLY signing PKI (root, intermediate, signer)", pki)
    p.add_argument("--dir", help="default: $PROVENANCE_HOME/pki")
    p.add_argument("--force", action="store_true", help="replace an existing one")

    p = add("rotate", credentials.pki_rotate, "a new DEVELOPMENT signer; files signed before keep verifying", pki)
    p.add_argument("--dir", help="default: $PROVENANCE_HOME/pki")
    p = add("distrust", credentials.pki_distrust, "distrust a (compromised) signing certificate", pki)
    p.add_argument("certificate", help="the signer's certificate (PEM)")
    p.add_argument("--reason", required=True)

    p = add("verify", credentials.verify, "verify a file's Content Credentials and report the video's current status")
    p.add_argument("file")
    p.add_argument("--json", action="store_true")

    p = add(
        "resolve", credentials.resolve, "find manifests by soft binding or by content (C2PA soft-binding resolution)"
    )
    p.add_argument("file", nargs="?")
    p.add_argument("--binding", metavar="ALG:VALUE")
    p.add_argument("--manifest", metavar="ID", help="fetch a stored manifest store by id")
    p.add_argument("--output", help="where to write the fetched manifest store")

    # --- the HTTP service

    p = add("api", access.api, "serve the HTTP API (and the C2PA soft-binding resolution API) until stopped")
    p.add_argument("--host", default="127.0.0.1", help="default: %(default)s")
    p.add_argument("--port", type=int, default=8080, help="default: %(default)s")

    admin = group("admin", "administrators of the HTTP service")
    p = add("init", access.admin_init, "make HANDLE an administrator (created if new) and set a password", admin)
    p.add_argument("handle")
    p.add_argument("--name")
    p.add_argument("--password-file", help="read the password from this file (default: generate and print one)")

    token = group("token", "bearer tokens of the HTTP service")
    p = add("create", access.token_create, "print a new bearer token for a person", token)
    p.add_argument("handle")
    p.add_argument("--scope", action="append", choices=SCOPES, help="limit the token (repeat); default: all theirs")
    p.add_argument("--expires", help="a duration such as 30d (default) or an ISO 8601 time")
    p = add("revoke", access.token_revoke, "revoke a token by its id", token)
    p.add_argument("token_id")

    client = group("client", "platforms' API clients (OAuth2 client credentials)")
    p = add("create", access.client_create, "register a client; prints its id and secret", client)
    p.add_argument("name")
    p.add_argument("--scope", action="append", choices=["read", "verify", "fetch:manifests"])

    # --- operations

    p = add("rebuild", operations.rebuild, "replay projections from the log beside the live ones and switch over")
    p.add_argument("projection", nargs="*", help="feed, lineage, consent, audit, takedowns (default: all)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--workers", type=int, help="processes replaying shares of the log at once, 1 to 8 (default: one per CPU)"
    )

    return parser
