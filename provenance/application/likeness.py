"""Likeness data at rest: a cameo's reference image, sealed under a key of its own (crypto-shredding).

The image goes into the blob store encrypted; the event records only the blob's URI, itself encrypted, so
destroying the cameo's key makes every copy of both unreadable. The cameo id is the associated data, so a
ciphertext cannot be moved to another cameo.
"""

from __future__ import annotations

import base64
from uuid import UUID

import orjson

from kernel.blobstore import BlobStore
from provenance.keystore import LikenessKeys


def seal_reference(keys: LikenessKeys, blobs: BlobStore, cameo_id: UUID, image: bytes) -> tuple[str, str]:
    """Encrypt and store the image under a new key; returns (key id, encrypted reference for the event)."""
    key_id = keys.create_key()
    context = str(cameo_id).encode()
    blob = blobs.put_bytes(keys.encrypt(key_id, image, context))
    reference = keys.encrypt(key_id, orjson.dumps({"blob": blob.uri}), context)
    return key_id, base64.b64encode(reference).decode()


def open_reference(keys: LikenessKeys, blobs: BlobStore, cameo_id: UUID, key_id: str, sealed: str) -> bytes:
    """The reference image; `KeyDestroyed` once the cameo was erased."""
    sha = reference_blob(keys, cameo_id, key_id, sealed)
    return keys.decrypt(key_id, blobs.read_bytes(sha), str(cameo_id).encode())


def reference_blob(keys: LikenessKeys, cameo_id: UUID, key_id: str, sealed: str) -> str:
    """The sha256 of the blob holding the encrypted image; `KeyDestroyed` once the cameo was erased."""
    reference = orjson.loads(keys.decrypt(key_id, base64.b64decode(sealed), str(cameo_id).encode()))
    return str(reference["blob"]).rsplit(":", 1)[1]
