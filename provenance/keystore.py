"""Per-cameo encryption keys, so that erasing a likeness is destroying one key (crypto-shredding).

Events are immutable and may be copied to other systems, so personal likeness data is only ever recorded
encrypted under a key kept here. Destroying the key makes every copy of the ciphertext unreadable. SQLite
is opened with `secure_delete` so the key bytes are overwritten, not just unlinked from the b-tree.
"""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime
from functools import cached_property
from typing import Protocol

import sqlalchemy as sa
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from kernel.errors import ProvenanceError

_metadata = sa.MetaData()
_keys = sa.Table(
    "likeness_keys",
    _metadata,
    sa.Column("key_id", sa.String(36), primary_key=True),
    sa.Column("key", sa.LargeBinary, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

_NONCE = 12


class KeyDestroyed(ProvenanceError):
    """The key was destroyed: the data it protected has been erased."""


class LikenessKeys(Protocol):
    """Where per-cameo keys live: the application service needs only these four operations."""

    def create_key(self) -> str: ...

    def encrypt(self, key_id: str, plaintext: bytes, context: bytes) -> bytes: ...

    def decrypt(self, key_id: str, ciphertext: bytes, context: bytes) -> bytes: ...

    def destroy(self, key_id: str) -> None: ...


class KeyStore:
    """Keys in a SQL database of their own (SQLite in the data directory by default).

    The database is opened on the first operation, so a command that never touches a likeness key neither
    needs nor checks it (a damaged key store stops only what uses keys).
    """

    def __init__(self, url: str) -> None:
        self.url = url

    @cached_property
    def engine(self) -> sa.Engine:
        engine = sa.create_engine(self.url)
        if engine.dialect.name == "sqlite":
            sa.event.listen(engine, "connect", _sqlite_secure_delete)
        _metadata.create_all(engine)
        database = engine.url.database
        if engine.dialect.name == "sqlite" and database and database != ":memory:":
            os.chmod(database, 0o600)  # the keys are readable by their owner only
        return engine

    def create_key(self) -> str:
        key_id = str(uuid.uuid4())
        with self.engine.begin() as conn:
            conn.execute(
                _keys.insert().values(key_id=key_id, key=AESGCM.generate_key(256), created_at=datetime.now(UTC))
            )
        return key_id

    def encrypt(self, key_id: str, plaintext: bytes, context: bytes) -> bytes:
        nonce = os.urandom(_NONCE)
        return nonce + AESGCM(self._key(key_id)).encrypt(nonce, plaintext, context)

    def decrypt(self, key_id: str, ciphertext: bytes, context: bytes) -> bytes:
        try:
            return AESGCM(self._key(key_id)).decrypt(ciphertext[:_NONCE], ciphertext[_NONCE:], context)
        except InvalidTag as exc:
            raise ProvenanceError(f"ciphertext under key {key_id} failed authentication") from exc

    def destroy(self, key_id: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(_keys.delete().where(_keys.c.key_id == key_id))

    def close(self) -> None:
        if "engine" in self.__dict__:
            self.engine.dispose()

    def _key(self, key_id: str) -> bytes:
        with self.engine.connect() as conn:
            key = conn.execute(sa.select(_keys.c.key).where(_keys.c.key_id == key_id)).scalar_one_or_none()
        if key is None:
            raise KeyDestroyed(f"key {key_id} was destroyed: the likeness data it protected is erased")
        return bytes(key)


def _sqlite_secure_delete(dbapi_connection: object, _: object) -> None:
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA secure_delete = ON")
    cursor.close()
