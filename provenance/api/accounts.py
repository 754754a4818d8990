"""Who may call the service: people's passwords, API clients, and the bearer tokens both are given.

Kept in the keys database (secrets, backed up apart from the event log, never replayed from it), never in
events: an event log is immutable and widely read, the wrong place for a password hash. Passwords and client
secrets are hashed with argon2id; a token is 32 random bytes shown once and stored as its SHA-256 (a
high-entropy token needs no slow hash, and the digest makes a stolen database useless for calling the API).
Every token expires and can be revoked.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from kernel.errors import InvalidInput, NotFound

TOKEN_PREFIX = "pvt_"
SECRET_PREFIX = "pvs_"
MIN_PASSWORD = 12
MAX_SECRET = 1024

SCOPES = ("read", "write", "verify", "fetch:manifests", "admin")
"""What a token may be used for; a person's token is also limited by the person's roles at each call."""

Kind = Literal["person", "client"]

_metadata = sa.MetaData()

passwords = sa.Table(
    "api_passwords",
    _metadata,
    sa.Column("person_id", sa.String(64), primary_key=True),
    sa.Column("hash", sa.String(200), nullable=False),
    sa.Column("changed_at", sa.Float, nullable=False),
)

clients = sa.Table(
    "api_clients",
    _metadata,
    sa.Column("client_id", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("secret_hash", sa.String(200), nullable=False),
    sa.Column("scopes", sa.String(500), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("revoked_at", sa.Float),
)

tokens = sa.Table(
    "api_tokens",
    _metadata,
    sa.Column("token_id", sa.String(64), primary_key=True),
    sa.Column("digest", sa.String(64), nullable=False, unique=True),
    sa.Column("kind", sa.String(10), nullable=False),
    sa.Column("subject", sa.String(64), nullable=False, index=True),
    sa.Column("scopes", sa.String(500), nullable=False),
    sa.Column("session", sa.Boolean, nullable=False, default=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False),
    sa.Column("revoked_at", sa.Float),
)


@dataclass(frozen=True)
class Token:
    token_id: str
    kind: Kind
    subject: str
    """The person id, or the client id."""
    scopes: frozenset[str]
    session: bool
    """Issued to a browser at sign-in (sent as a cookie, so unsafe requests also need its CSRF token)."""
    expires_at: float

    @property
    def csrf(self) -> str:
        """The value a browser session sends back in `X-CSRF-Token` (derived, so nothing more is stored)."""
        return hashlib.sha256(f"csrf:{self.token_id}".encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Client:
    client_id: str
    name: str
    scopes: frozenset[str]


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def check_scopes(scopes: Iterable[str]) -> frozenset[str]:
    chosen = frozenset(scopes)
    unknown = chosen - set(SCOPES)
    if unknown:
        raise InvalidInput(f"unknown scope(s) {', '.join(sorted(unknown))} (known: {', '.join(SCOPES)})")
    return chosen


HASHES_AT_ONCE = max(1, os.cpu_count() or 1)
"""Password and secret hashes computed at once: each takes argon2's 64 MiB and a core for a fifth of a second, and
a wrong guess costs as much as a right one (on purpose), so unbounded they would let a crowd of guesses take the
process's memory; past this many, a check waits for one to finish."""


class Accounts:
    def __init__(self, url: str, clock: Callable[[], float] = time.time) -> None:
        from argon2 import PasswordHasher

        from provenance.kafka.positions import creating_tables

        self.engine: Engine = sa.create_engine(url)
        self.clock = clock
        self.hasher = PasswordHasher()
        self._hashing = threading.BoundedSemaphore(HASHES_AT_ONCE)
        creating_tables(lambda: _metadata.create_all(self.engine))
        self._dummy = self.hasher.hash(secrets.token_hex(16))

    def _verify(self, stored: str, secret: str) -> bool:
        with self._hashing:
            return bool(self.hasher.verify(stored, secret[:MAX_SECRET]))

    def _hash(self, secret: str) -> str:
        with self._hashing:
            return str(self.hasher.hash(secret))

    def close(self) -> None:
        self.engine.dispose()

    # --- passwords -------------------------------------------------------------------------------------------

    def set_password(self, person_id: str, password: str) -> None:
        if not MIN_PASSWORD <= len(password) <= MAX_SECRET:
            raise InvalidInput(f"a password has {MIN_PASSWORD} to {MAX_SECRET} characters")
        row = {"person_id": person_id, "hash": self._hash(password), "changed_at": self.clock()}
        with self.engine.begin() as conn:
            if conn.execute(passwords.update().where(passwords.c.person_id == person_id).values(**row)).rowcount == 0:
                conn.execute(passwords.insert().values(**row))
            else:  # a changed password ends every session and token issued under the old one
                self._revoke_all(conn, person_id)

    def has_password(self, person_id: str) -> bool:
        with self.engine.connect() as conn:
            return (
                conn.execute(sa.select(passwords.c.person_id).where(passwords.c.person_id == person_id)).first()
                is not None
            )

    def check_password(self, person_id: str, password: str) -> bool:
        """Whether the password is the person's; as slow for an unknown person as for a wrong password."""
        from argon2.exceptions import InvalidHashError, VerificationError

        with self.engine.connect() as conn:
            stored = conn.execute(sa.select(passwords.c.hash).where(passwords.c.person_id == person_id)).scalar()
        try:
            return self._verify(stored or self._dummy, password) and stored is not None
        except (VerificationError, InvalidHashError):
            return False

    # --- clients -----------------------------------------------------------------------------------------------

    def create_client(self, name: str, scopes: Iterable[str]) -> tuple[str, str]:
        """A platform's API client; returns its id and secret (shown once)."""
        if not name.strip() or len(name) > 200:
            raise InvalidInput("a client needs a name of 1 to 200 characters")
        chosen = check_scopes(scopes) or frozenset({"verify", "fetch:manifests"})
        client_id = f"client_{secrets.token_hex(8)}"
        secret = SECRET_PREFIX + secrets.token_urlsafe(32)
        with self.engine.begin() as conn:
            conn.execute(
                clients.insert().values(
                    client_id=client_id,
                    name=name,
                    secret_hash=self._hash(secret),
                    scopes=json.dumps(sorted(chosen)),
                    created_at=self.clock(),
                )
            )
        return client_id, secret

    def check_client(self, client_id: str, secret: str) -> Client | None:
        from argon2.exceptions import InvalidHashError, VerificationError

        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(clients).where(clients.c.client_id == client_id[:64], clients.c.revoked_at.is_(None))
            ).first()
        try:
            ok = self._verify(row.secret_hash if row else self._dummy, secret)
        except (VerificationError, InvalidHashError):
            return None
        if not ok or row is None:
            return None
        return Client(row.client_id, row.name, frozenset(json.loads(row.scopes)))

    def client(self, client_id: str) -> Client | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(clients).where(clients.c.client_id == client_id, clients.c.revoked_at.is_(None))
            ).first()
        return Client(row.client_id, row.name, frozenset(json.loads(row.scopes))) if row else None

    def revoke_client(self, client_id: str) -> None:
        with self.engine.begin() as conn:
            if not conn.execute(
                clients.update().where(clients.c.client_id == client_id).values(revoked_at=self.clock())
            ).rowcount:
                raise NotFound(f"no client {client_id}")
            conn.execute(tokens.update().where(tokens.c.subject == client_id).values(revoked_at=self.clock()))

    # --- tokens ------------------------------------------------------------------------------------------------

    def issue(
        self, kind: Kind, subject: str, scopes: Iterable[str], ttl_s: float, *, session: bool = False
    ) -> tuple[str, Token]:
        """A new bearer token (the secret, shown once, and what it grants)."""
        if ttl_s <= 0:
            raise InvalidInput("a token's lifetime must be positive")
        chosen = check_scopes(scopes)
        secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
        now = self.clock()
        token = Token(secrets.token_hex(8), kind, subject, chosen, session, now + ttl_s)
        with self.engine.begin() as conn:
            conn.execute(
                tokens.insert().values(
                    token_id=token.token_id,
                    digest=_digest(secret),
                    kind=kind,
                    subject=subject,
                    scopes=json.dumps(sorted(chosen)),
                    session=session,
                    created_at=now,
                    expires_at=token.expires_at,
                )
            )
        return secret, token

    def lookup(self, secret: str) -> Token | None:
        """What a presented token grants; None when it is unknown, expired or revoked."""
        if not secret.startswith(TOKEN_PREFIX) or len(secret) > 100:
            return None
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(tokens).where(
                    tokens.c.digest == _digest(secret),
                    tokens.c.revoked_at.is_(None),
                    tokens.c.expires_at > self.clock(),
                )
            ).first()
        if row is None:
            return None
        return Token(
            row.token_id, row.kind, row.subject, frozenset(json.loads(row.scopes)), row.session, row.expires_at
        )

    def revoke(self, token_id: str) -> None:
        with self.engine.begin() as conn:
            if not conn.execute(
                tokens.update().where(tokens.c.token_id == token_id).values(revoked_at=self.clock())
            ).rowcount:
                raise NotFound(f"no token {token_id}")

    def revoke_all(self, subject: str) -> int:
        """Every token of a person or client (a password changed, an account closed)."""
        with self.engine.begin() as conn:
            return self._revoke_all(conn, subject)

    def _revoke_all(self, conn: Connection, subject: str) -> int:
        revoked = tokens.update().where(tokens.c.subject == subject, tokens.c.revoked_at.is_(None))
        return conn.execute(revoked.values(revoked_at=self.clock())).rowcount
