"""Errors of the Content Credentials step, each with a one-line message a user can act on."""

from __future__ import annotations

from kernel.errors import InfrastructureFailure, ProvenanceError


class CredentialsError(ProvenanceError):
    """Base class for errors raised while signing, watermarking or verifying a video."""


class PkiError(CredentialsError, InfrastructureFailure):
    """A certificate, key or trust-anchor file is missing, unreadable or unfit for C2PA signing.

    Refused before anything is recorded where a command checks the identity first (exit 2); met while a
    video is signed, it is the signer's own setup that failed, never a verdict on the video."""

    exit_code = 2


class SigningError(CredentialsError):
    """The video could not be signed; no signed-looking file was left behind."""


class TimeStampUnavailable(SigningError, InfrastructureFailure):
    """The time-stamp authority did not answer, or refused, after every try: nothing was signed, and the
    video waits to be signed once the authority is back."""

    exit_code = 6


class WatermarkError(CredentialsError):
    """The watermark could not be embedded in, or read from, a file that is not a decodable video."""

    exit_code = 2
