"""What a verifier trusts: the anchors, which of them are development roots, and the signers distrusted since.

Trust is configuration: verification reports `Trusted` only against the anchors listed in a `TrustConfig`,
never against a built-in list. Reading the anchors means parsing certificates (each must be a CA; a development
root is told by the mark in its name), which needs `cryptography`: importing it costs about as much as a whole
small verification. So what the parse finds about each certificate (a CA, a development root or not) is kept
beside the anchor file, under the file's SHA-256: a verification with the same anchors as the last one neither
parses them again nor imports `cryptography`. The certificates given to the SDK are always the file's own PEM
blocks; the note holds only what was found about them, is used only for the exact content it was made from,
and lives where only someone who could change the anchors themselves can change it. Where that directory is
not writable, every verification parses the anchors.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from provenance.credentials.errors import PkiError

ANCHORS_FILE = "trust-anchors.pem"
DISTRUST_FILE = "distrusted-signers.json"
"""Signing certificates no longer trusted (a compromised key): every file they signed is reported."""
DEVELOPMENT_MARK = "DEVELOPMENT ONLY"


def is_development_name(name: str | None) -> bool:
    """True for a certificate name issued by `create_development_pki` (the mark is in every CN)."""
    return bool(name) and DEVELOPMENT_MARK in str(name)


class Anchor(NamedTuple):
    pem: str
    development: bool


@dataclass(frozen=True, slots=True)
class TrustConfig:
    """The roots a verifier trusts. Nothing else is trusted: there is no built-in list."""

    anchor_files: tuple[Path, ...]
    allowed_ekus: tuple[str, ...] = ()
    """Extended key usages accepted for signers; empty keeps the C2PA defaults (emailProtection among them)."""
    distrust_file: Path | None = None
    only_development: bool = False
    """Keep only the DEVELOPMENT anchors: a file trusted by them alone was signed under a development PKI."""

    @classmethod
    def from_directory(cls, directory: Path) -> TrustConfig:
        return cls(anchor_files=(Path(directory) / ANCHORS_FILE,), distrust_file=Path(directory) / DISTRUST_FILE)

    def distrusted(self) -> list[DistrustedSigner]:
        return load_distrusted(self.distrust_file) if self.distrust_file is not None else []

    def anchors(self) -> list[Anchor]:
        """Every anchor, each checked to be a CA certificate."""
        if not self.anchor_files:
            raise PkiError("no trust anchors configured: give at least one PEM file of root certificates")
        return [anchor for path in self.anchor_files for anchor in anchors_in(Path(path))]

    def anchors_pem(self) -> str:
        """The anchors as one PEM bundle (only the development ones when `only_development` is set)."""
        return "".join(a.pem for a in self.anchors() if a.development or not self.only_development)

    def development_kinds(self) -> set[bool]:
        """Whether the anchors are development roots: {True}, {False}, or both when mixed."""
        return {a.development for a in self.anchors()}


_PEM_CERTIFICATE = re.compile(r"-----BEGIN CERTIFICATE-----\r?\n[A-Za-z0-9+/=\r\n]+-----END CERTIFICATE-----\r?\n?")


def anchors_in(path: Path) -> list[Anchor]:
    """The CA certificates of one PEM file; refused when it holds anything that is not one."""
    if not path.is_file():
        raise PkiError(f"trust anchor file not found: {path}")
    content = path.read_bytes()
    blocks = _PEM_CERTIFICATE.findall(content.decode("ascii", errors="replace"))
    digest = hashlib.sha256(content).hexdigest()
    note = path.with_name(f".{path.name}.anchors.json")
    development = _noted(note, digest, len(blocks))
    if development is None:
        development = _development_flags(content, path, len(blocks))
        _write_quietly(note, json.dumps({"sha256": digest, "development": development}))
    return [
        Anchor(pem if pem.endswith("\n") else pem + "\n", flag) for pem, flag in zip(blocks, development, strict=True)
    ]


def _noted(note: Path, digest: str, count: int) -> list[bool] | None:
    """The development flags noted for exactly this content, if any."""
    try:
        found = json.loads(note.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    flags = found.get("development") if isinstance(found, dict) and found.get("sha256") == digest else None
    if not isinstance(flags, list) or len(flags) != count or not all(isinstance(f, bool) for f in flags):
        return None
    return flags


def _development_flags(content: bytes, path: Path, blocks: int) -> list[bool]:
    """Parse the certificates: each must be a CA; whether each is a development root."""
    from cryptography import x509

    from provenance.credentials.pki import common_name, is_ca

    try:
        certificates = x509.load_pem_x509_certificates(content)
    except ValueError as exc:
        raise PkiError(f"trust anchor file {path} is not a PEM certificate bundle") from exc
    if len(certificates) != blocks:
        raise PkiError(f"trust anchor file {path} holds certificates this reader cannot delimit")
    for certificate in certificates:
        if not is_ca(certificate):
            raise PkiError(f"trust anchor file {path} holds a certificate that is not a CA")
    return [is_development_name(common_name(certificate)) for certificate in certificates]


def _write_quietly(target: Path, text: str) -> None:
    """Write the note whole (a temporary file renamed over it), or not at all where that is not allowed."""
    try:
        fd, name = tempfile.mkstemp(dir=target.parent, prefix=".anchors-")
    except OSError:
        return  # not writable here: the next verification parses the anchors again
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(name, target)
    except OSError:
        Path(name).unlink(missing_ok=True)


@dataclass(frozen=True, slots=True)
class DistrustedSigner:
    serial_number: str
    """Hex, lower case, as verifiers print it."""
    issuer: str
    """The issuer's common name, or its whole name (RFC 4514) when it has none."""
    subject: str
    fingerprint: str
    reason: str
    distrusted_at: str

    def matches(self, serial_number: str | None, issuer: Mapping[str, str]) -> bool:
        """Whether a certificate of this serial number and issuer (its attributes by short name, as a manifest's
        signature info gives them) is this one."""
        if (serial_number or "").lower().lstrip("0") != self.serial_number.lstrip("0"):
            return False
        if "CN" in issuer:
            return issuer["CN"] == self.issuer
        return {f"{k}={v}" for k, v in issuer.items()} == {part.strip() for part in self.issuer.split(",")}


def load_distrusted(path: Path) -> list[DistrustedSigner]:
    if not path.is_file():
        return []
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
        return [DistrustedSigner(**entry) for entry in entries]
    except (ValueError, TypeError) as exc:
        raise PkiError(f"the distrust list {path} is not readable: {exc}") from exc
