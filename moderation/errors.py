"""Errors of the moderation gate.

Each one is a `ProvenanceError`, so the CLI and the workers show its one-line message as it is. A moderation
error never produces a decision: the video stays at its gate until the cause is fixed (fail closed).
"""

from __future__ import annotations

from kernel.errors import InfrastructureFailure, InvalidInput, ProvenanceError


class ModerationError(ProvenanceError):
    """The gate could not score a video; no decision was made."""


class ModelLoadError(ModerationError, InfrastructureFailure):
    """A model (backbone, head, exported encoder) could not be loaded or does not fit the backbone."""

    exit_code = 6


class ProductionModelRequired(ModelLoadError):
    """Production mode was asked to run without real weights: the gate refuses rather than guess."""


class UnreadableMedia(InvalidInput):
    """A media file that cannot be decoded completely (corrupt, truncated, no frames, not media)."""


class PolicyError(InvalidInput):
    """A policy file that is malformed or names something that does not exist."""
