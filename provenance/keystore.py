"""Per-cameo encryption keys, so that erasing a likeness is destroying one key (crypto-shredding).

Events are immutable and may be copied to other systems, so personal likeness data is only ever recorded
encrypted under a key kept here. Destroying the key makes every copy of the ciphertext unreadable. SQLite
is opened with `secure_delete` so the key bytes are overwritten, not just unlinked from the b-tree.

A destroyed key leaves a tombstone (its id and when it was destroyed, in `destroyed_keys`), so the store tells
a key that was destroyed (`KeyDestroyed`: the likeness was erased) from one it never held (`KeyMissing`: a
setup failure, such as a lost key store or a wrong `PROVENANCE_KEYS_URL`). Stores written before tombstones
have neither for the keys they destroyed; the cameo's erasure, on record, says so, and every reader of a
reference asks it first. Only `create_key` makes the store's tables: reading a store that does not exist
never makes an empty one in its place.
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

from kernel.errors import InfrastructureFailure, ProvenanceError

_metadata = sa.MetaData()
_keys = sa.Table(
    "likeness_keys",
    _metadata,
    sa.Column("key_id", sa.String(36), primary_key=True),
    sa.Column("key", sa.LargeBinary, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)
_destroyed = sa.Table(
    "destroyed_keys",
    _metadata,
    sa.Column("key_id", sa.String(36), primary_key=True),
    sa.Column("destroyed_at", sa.DateTime(timezone=True), nullable=False),
)

_NONCE = 12


class KeyDestroyed(ProvenanceError):
    """The key was destroyed: the data it protected has been erased."""


class KeyMissing(InfrastructureFailure):
    """The key store does not hold the key at all, destroyed or not: it is not the store the key was made in (a
    lost or replaced database, a wrong `PROVENANCE_KEYS_URL`). Nothing was erased; no verdict on a video."""

    @classmethod
    def of(cls, url: str, key_id: str) -> KeyMissing:
        from provenance.damage import redacted

        return cls(
            f"the key store at {redacted(url)} does not hold key {key_id}: restore the key store from its backup "
            "or point PROVENANCE_KEYS_URL at it"
        )


class LikenessKeys(Protocol):
    """Where per-cameo keys live: the application service needs only these operations."""

    def create_key(self) -> str: ...

    def encrypt(self, key_id: str, plaintext: bytes, context: bytes) -> bytes: ...

    def decrypt(self, key_id: str, ciphertext: bytes, context: bytes) -> bytes: ...

    def destroy(self, key_id: str) -> None: ...

    def has_held_keys(self) -> bool: ...


class KeyStore:
    """Keys in a SQL database of their own (SQLite in the data directory by default).

    The database is opened on the first operation, so a command that never touches a likeness key neither
    needs nor checks it (a damaged key store stops only what uses keys). Only `create_key` makes the database
    and its tables; the other operations find a store without them holding no key (`KeyMissing`).
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self._ready = False

    @cached_property
    def engine(self) -> sa.Engine:
        engine = sa.create_engine(self.url)
        if engine.dialect.name == "sqlite":
            sa.event.listen(engine, "connect", _sqlite_secure_delete)
        return engine

    def _exists(self, *, create: bool) -> bool:
        """Whether the store's tables are there, making them when `create` (or adding the tombstones' table to a
        store written before it). A SQLite file that is not there is not made to find out."""
        if self._ready:
            return True
        database = sqlite_file(self.url)
        if not create:
            if database is not None and not os.path.exists(database):
                return False
            if not sa.inspect(self.engine).has_table(_keys.name):
                return False
        _metadata.create_all(self.engine)
        if database is not None:
            os.chmod(database, 0o600)  # the keys are readable by their owner only
        self._ready = True
        return True

    def create_key(self) -> str:
        self._exists(create=True)
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
        """Overwrite the key (`secure_delete`) and leave its tombstone. A key the store no longer holds gets its
        tombstone too: a store written before tombstones deleted destroyed keys without one, and the caller
        (an erasure, on record) knows the key is meant to be gone. A store that does not exist is `KeyMissing`."""
        if not self._exists(create=False):
            raise KeyMissing.of(self.url, key_id)
        tombstone = sa.select(_destroyed.c.key_id).where(_destroyed.c.key_id == key_id)
        for attempt in range(2):
            try:
                with self.engine.begin() as conn:
                    conn.execute(_keys.delete().where(_keys.c.key_id == key_id))
                    if conn.execute(tombstone).first() is None:
                        conn.execute(_destroyed.insert().values(key_id=key_id, destroyed_at=datetime.now(UTC)))
                return
            except sa.exc.IntegrityError:  # another erasure left the tombstone first: look again
                if attempt:
                    raise

    def has_held_keys(self) -> bool:
        """Whether this store has ever held a key: its keys' table is there, which only `create_key` makes (a store
        whose every key was erased, before erasures left tombstones, holds none now and is still the store)."""
        return self._exists(create=False)

    def close(self) -> None:
        if "engine" in self.__dict__:
            self.__dict__.pop("engine").dispose()
        self._ready = False

    def _key(self, key_id: str) -> bytes:
        if not self._exists(create=False):
            raise KeyMissing.of(self.url, key_id)
        with self.engine.connect() as conn:
            key = conn.execute(sa.select(_keys.c.key).where(_keys.c.key_id == key_id)).scalar_one_or_none()
            if key is None:
                tombstone = sa.select(_destroyed.c.key_id).where(_destroyed.c.key_id == key_id)
                destroyed = conn.execute(tombstone).first() is not None
        if key is None:
            if destroyed:
                raise KeyDestroyed(f"key {key_id} was destroyed: the likeness data it protected is erased")
            raise KeyMissing.of(self.url, key_id)
        return bytes(key)


def sqlite_file(url: str) -> str | None:
    """The file a SQLite URL names; None for another database or an in-memory one."""
    parsed = sa.make_url(url)
    database = parsed.database
    if parsed.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return None
    return database


def _sqlite_secure_delete(dbapi_connection: object, _: object) -> None:
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA secure_delete = ON")
    cursor.close()
