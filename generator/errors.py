"""Errors of the render step, each with a one-line message fit to show a user or write to a worker log."""

from __future__ import annotations

from kernel.errors import ProvenanceError


class RenderError(ProvenanceError):
    """A render or its encoding failed (disk full, encoder error, a backend that broke its contract).

    Raised only after every temporary file of the render has been removed, so a failed render leaves
    nothing behind in the blob store's directory.
    """

    exit_code = 6
