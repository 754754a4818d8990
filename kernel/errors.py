"""Errors a user can act on.

Every error that reaches a person (CLI, API, worker log) is a `ProvenanceError` whose message is one line
that says what was wrong and, where it helps, what to do. Anything else is a bug.
"""

from __future__ import annotations


class ProvenanceError(Exception):
    """Base class for errors whose message is fit to show a user as it is.

    Exit codes: 2 bad input, 3 unknown id, 4 a rule refused it, 5 a missing optional dependency, 6 an
    operation failed (a stage, a store write, signing), 7 a database or broker cannot be reached. A command
    that ends with 1 met a bug.
    """

    exit_code = 6


class NotFound(ProvenanceError):
    """An id that names nothing the system knows."""

    exit_code = 3


class InvalidInput(ProvenanceError):
    """Malformed input: the command was refused before anything was recorded."""

    exit_code = 2


class RuleViolation(ProvenanceError):
    """A command that breaks a rule of the domain (consent, gates, ownership)."""

    exit_code = 4


class ConsentError(RuleViolation):
    """Consent is missing, expired or revoked for a likeness."""


class NotPermitted(RuleViolation):
    """The actor may not do this (someone else's cameo, a role they do not hold)."""


class InvalidTransition(RuleViolation):
    """A result arrived for a video in a state that cannot take it (out of order, or after a block)."""


class CommandConflict(RuleViolation):
    """A command id was reused with different arguments."""


class StageFailed(ProvenanceError):
    """A stage or a service role could not do its work (render, moderation, signing, a Kafka role)."""

    exit_code = 6


class InfrastructureFailure(ProvenanceError):
    """The machine or the system's own setup failed, not the content: a full disk, a damaged signing identity,
    model weights that do not load, a service that did not answer.

    A gate never records one as a verdict on a video (a block, a render failure): the video stays where it is and
    its gate runs again, from the same event and with the same command id, once the cause is fixed.
    """

    exit_code = 6


class MissingDependency(InfrastructureFailure):
    """An optional dependency is not installed; the message names the extra to install."""

    exit_code = 5


def require(module: str, extra: str) -> None:
    """Fail with an actionable message when an optional dependency is absent.

    Called by modules at the edges just before their heavy imports, so a light install (the core only)
    reports `pip install 'provenance[extra]'` instead of a bare ImportError.
    """
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise MissingDependency(
            f"this needs the optional dependency {module!r}: install it with pip install 'provenance[{extra}]'"
        )


def causes(exc: BaseException, *, implicit: bool = False) -> list[BaseException]:
    """The error and those it came from, nearest first: its cause, or the driver's error SQLAlchemy keeps as
    `orig`; with `implicit`, also the error being handled when it was raised."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not seen for seen in chain):
        chain.append(current)
        current = current.__cause__ or getattr(current, "orig", None) or (current.__context__ if implicit else None)
    return chain


def quoted(value: object, limit: int = 80) -> str:
    """A value as an error message quotes it: its repr, cut short when it is long (a 100 kB argument)."""
    text = str(value)
    return repr(text) if len(text) <= limit else repr(text[:limit]) + "…"
