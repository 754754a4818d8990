"""File names that native libraries can take."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def is_utf8_named(path: Path) -> bool:
    """Whether the path is valid UTF-8 (a name of other bytes reaches Python with surrogate escapes)."""
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@contextmanager
def utf8_named(path: Path) -> Iterator[Path]:
    """The file under a name OpenCV can open: its own when that is valid UTF-8, otherwise a link to it in a
    temporary directory (OpenCV's video capture crashes the process on a name of other bytes)."""
    if is_utf8_named(path):
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="provenance-media-") as scratch:
        link = Path(scratch) / f"media{path.suffix if is_utf8_named(Path(path.suffix)) else ''}"
        os.symlink(os.path.abspath(path), link)
        yield link
