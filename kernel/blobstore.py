"""Content-addressed blob store.

Media bytes never go into events: events hold the sha256 and the `blob:sha256:<hex>` URI of the bytes
stored here. Writes go to a temporary file in the same directory and are renamed into place after an
fsync, so a crash or a full disk never leaves a half-written blob under a valid name.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from kernel.errors import InfrastructureFailure, InvalidInput, NotFound

URI_PREFIX = "blob:sha256:"
_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class BlobRef:
    sha256: str
    uri: str
    size: int


class BlobWriteError(InfrastructureFailure):
    """The store could not write a blob (disk full, permissions); nothing was stored."""


class BlobDamaged(InfrastructureFailure):
    """A stored blob's content no longer has the hash it is named by (a disk fault, a hand edit)."""


OUT_OF_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})
"""The errnos of a write that failed for want of space: the disk is full, or the user's quota is."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_from_uri(uri: str) -> str:
    if not uri.startswith(URI_PREFIX) or len(uri) != len(URI_PREFIX) + 64:
        raise InvalidInput(f"not a blob URI: {uri!r} (expected {URI_PREFIX}<64 hex digits>)")
    return uri[len(URI_PREFIX) :]


class BlobStore:
    """Blobs under `root/ab/cd/<sha256>`; the name is the hash of the content, so a put is idempotent."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, sha256: str) -> Path:
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise InvalidInput(f"not a sha256 hex digest: {sha256!r}")
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def exists(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    def resolve(self, uri: str) -> Path:
        """The local path of a stored blob, given its URI."""
        path = self.path(sha256_from_uri(uri))
        if not path.is_file():
            raise NotFound(f"blob {uri} is not in the store at {self.root}")
        return path

    def put_bytes(self, data: bytes) -> BlobRef:
        def fill(handle: BinaryIO) -> tuple[str, int]:
            handle.write(data)
            return hashlib.sha256(data).hexdigest(), len(data)

        return self._store(fill)

    def put_file(self, source: Path) -> BlobRef:
        """Copy a file in; the source is left untouched."""
        if not Path(source).is_file():
            raise NotFound(f"no such file: {source}")

        def fill(handle: BinaryIO) -> tuple[str, int]:
            digest = hashlib.sha256()
            size = 0
            with open(source, "rb") as src:
                while chunk := src.read(_CHUNK):
                    digest.update(chunk)
                    size += len(chunk)
                    handle.write(chunk)
            return digest.hexdigest(), size

        return self._store(fill)

    def open(self, sha256: str) -> BinaryIO:
        path = self.path(sha256)
        if not path.is_file():
            raise NotFound(f"blob {URI_PREFIX}{sha256} is not in the store at {self.root}")
        return open(path, "rb")

    def read_bytes(self, sha256: str) -> bytes:
        """The blob's content, checked against its name: damaged bytes are never handed on as the blob."""
        with self.open(sha256) as handle:
            data = handle.read()
        if hashlib.sha256(data).hexdigest() != sha256:
            raise BlobDamaged(
                f"blob {URI_PREFIX}{sha256} in {self.root} is damaged (its content no longer has its hash): "
                "restore it from a backup"
            )
        return data

    def delete(self, sha256: str) -> None:
        """Remove a blob (used when erasing personal data that was stored encrypted)."""
        self.path(sha256).unlink(missing_ok=True)

    def _store(self, fill: Callable[[BinaryIO], tuple[str, int]]) -> BlobRef:
        tmp: Path | None = None
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(prefix=".incoming-", dir=self.root)
            tmp = Path(name)
            with os.fdopen(fd, "wb") as handle:
                sha256, size = fill(handle)
                handle.flush()
                os.fsync(handle.fileno())
            final = self.path(sha256)
            final.parent.mkdir(parents=True, exist_ok=True)
            if final.exists() and sha256_file(final) == sha256:
                tmp.unlink()
            else:  # new, or a damaged copy that the same content repairs
                os.replace(tmp, final)
        except OSError as exc:
            if tmp is not None:
                tmp.unlink(missing_ok=True)
            if exc.errno in OUT_OF_SPACE:
                raise BlobWriteError(f"no space left on device: {self.root} (the blob store)") from exc
            reason = exc.strerror or exc
            raise BlobWriteError(f"could not write to the blob store at {self.root}: {reason}") from exc
        except BaseException:
            if tmp is not None:
                tmp.unlink(missing_ok=True)
            raise
        return BlobRef(sha256=sha256, uri=URI_PREFIX + sha256, size=size)


def export(store: BlobStore, uri: str, destination: Path) -> Path:
    """Give a blob a user-visible name (`videos/<id>.mp4`): a hard link where possible, else a copy.

    Blobs are never modified in place, so sharing the inode is safe; the copy is atomic like every write.
    """
    source = store.resolve(uri)
    destination.parent.mkdir(parents=True, exist_ok=True)
    tmp = destination.with_name(f".{destination.name}.partial")
    tmp.unlink(missing_ok=True)
    try:
        os.link(source, tmp)
    except OSError:
        shutil.copyfile(source, tmp)
    os.replace(tmp, destination)
    return destination
