"""The moderation models on their own: `moderate FILE`, `moderation train`, `moderation eval`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from provenance.cli import render
from provenance.cli.handlers.common import show

if TYPE_CHECKING:
    from provenance.bootstrap import System

VERDICT_EXIT = {"allow": 0, "review": 10, "block": 11}
"""`provenance moderate` exits with the verdict, so a script can branch on it."""


def moderate(system: System, args: argparse.Namespace) -> int:
    from moderation.config import ModerationContext
    from moderation.moderator import load_moderator

    config = system.moderator_config(Path(args.policy) if args.policy else None)
    decision = load_moderator(config).moderate_video(Path(args.file), ModerationContext(config=config))
    payload = decision.to_payload().model_dump(mode="json")
    show(args, payload, lambda: render.render_moderation(payload))
    return VERDICT_EXIT[payload["verdict"]]


def _backbone(system: System) -> Any:
    from moderation.backbone import load_backbone

    return load_backbone(system.moderator_config().backbone)


def train(system: System, args: argparse.Namespace) -> int:
    from moderation.training import train_head

    report = train_head(
        Path(args.folder), Path(args.out), _backbone(system), positive_label=args.positive, show_progress=True
    )
    print(report.render())
    return 0


def evaluate(system: System, args: argparse.Namespace) -> int:
    from moderation.training import evaluate as evaluate_head

    report = evaluate_head(
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
