"""Errors of the Content Credentials step, each with a one-line message a user can act on."""

from __future__ import annotations

from kernel.errors import ProvenanceError


class CredentialsError(ProvenanceError):
    """Base class for errors raised while signing, watermarking or verifying a video."""


class PkiError(CredentialsError):
    """A certificate, key or trust-anchor file is missing, unreadable or unfit for C2PA signing."""

    exit_code = 2


class SigningError(CredentialsError):
    """The video could not be signed; no signed-looking file was left behind."""


class WatermarkError(CredentialsError):
    """The watermark could not be embedded in, or read from, a file that is not a decodable video."""

    exit_code = 2
