"""Signing identity, trust anchors, and a development PKI to get started without a real CA.

C2PA validators accept a claim signer only when its certificate is a non-CA leaf with digitalSignature
and an allowed extended key usage (emailProtection here), sent with its intermediate, chaining to a root
the validator trusts. Trust is configuration: verification reports `Trusted` only against the anchors
listed in `TrustConfig`, never against a built-in list.

The development PKI (root -> intermediate -> signing leaf, ES256) is labelled as such in every subject
and in a README beside it, so a file it signed can never pass for a production credential.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import itertools
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from provenance.credentials.errors import PkiError
from provenance.credentials.trust import (
    ANCHORS_FILE,
    DEVELOPMENT_MARK,
    DISTRUST_FILE,
    DistrustedSigner,
    TrustConfig,
    is_development_name,
    load_distrusted,
)

CHAIN_FILE = "signer-chain.pem"
KEY_FILE = "signer-key.pem"
README_FILE = "README.txt"
RETIRED_DIR = "retired"
TSA_CHAIN_FILE = "tsa-chain.pem"
TSA_KEY_FILE = "tsa-key.pem"
"""A DEVELOPMENT time-stamp authority's certificate (EKU timeStamping) and key, under the same root."""
C2PA_CLAIM_SIGNING_EKU = "1.3.6.1.4.1.62558.2.1"
_ACCEPTED_EKUS = {ExtendedKeyUsageOID.EMAIL_PROTECTION.dotted_string, C2PA_CLAIM_SIGNING_EKU}

SignCallback = Callable[[bytes], bytes]
"""Signs the COSE to-be-signed bytes with the leaf's key (ES256); lets a KMS or HSM hold the key."""


@dataclass(frozen=True, slots=True)
class SigningIdentity:
    """Who signs: the certificate chain (leaf first, then intermediate) and either a key file or a callback.

    `tsa_url` is off by default: a time-stamp authority that cannot be reached makes signing fail.
    """

    chain_file: Path
    key_file: Path | None = None
    trust: TrustConfig | None = None
    """Anchors used to validate the freshly signed file and the ingredients it embeds."""
    sign_callback: SignCallback | None = field(default=None, compare=False)
    tsa_url: str | None = None

    @classmethod
    def from_directory(cls, directory: Path, tsa_url: str | None = None) -> SigningIdentity:
        """The identity laid out by `create_development_pki` (or by hand in the same file names)."""
        directory = Path(directory)
        return cls(
            chain_file=directory / CHAIN_FILE,
            key_file=directory / KEY_FILE,
            trust=TrustConfig.from_directory(directory),
            tsa_url=tsa_url,
        )

    def chain_pem(self) -> str:
        return self._loaded().chain_pem

    def key_pem(self) -> str:
        if self.key_file is None:
            raise PkiError("this signing identity has no key file (it signs through a callback)")
        path = Path(self.key_file)
        if not path.is_file():
            raise PkiError(f"signing key file not found: {path}")
        return _read_pem(path, "signing key file")

    def leaf(self) -> x509.Certificate:
        return self._loaded().leaf

    def certificate_fingerprint(self) -> str:
        """sha256 hex of the leaf certificate's DER encoding."""
        return certificate_fingerprint(self.leaf())

    def signer_name(self) -> str:
        return common_name(self.leaf())

    def is_development(self) -> bool:
        return any(is_development_certificate(c) for c in self._loaded().chain)

    def check(self, at: dt.datetime | None = None) -> None:
        """Raise PkiError unless this identity can sign now: a fit leaf, in its validity window, with a key, and
        trust anchors that load (a signed file is validated against them before it is kept)."""
        loaded = self._loaded()
        leaf = loaded.leaf
        when = at or dt.datetime.now(dt.UTC)
        name = common_name(leaf)
        if when < leaf.not_valid_before_utc:
            raise PkiError(
                f"signing certificate {name!r} is not valid before {leaf.not_valid_before_utc:%Y-%m-%d %H:%M:%SZ}"
            )
        if when >= leaf.not_valid_after_utc:
            raise PkiError(f"signing certificate {name!r} expired on {leaf.not_valid_after_utc:%Y-%m-%d %H:%M:%SZ}")
        _check_signing_leaf(leaf, self.chain_file)
        if self.sign_callback is None:
            key = _load_private_key(self.key_pem(), self.key_file)
            if key.public_key().public_numbers() != leaf.public_key().public_numbers():  # type: ignore[union-attr]
                raise PkiError(f"signing key {self.key_file} does not match the certificate in {self.chain_file}")
        if self.trust is not None:
            self.trust.anchors()

    def _loaded(self) -> _LoadedChain:
        return _LoadedChain.load(Path(self.chain_file))


@dataclass(frozen=True, slots=True)
class _LoadedChain:
    chain: tuple[x509.Certificate, ...]
    chain_pem: str

    @property
    def leaf(self) -> x509.Certificate:
        return self.chain[0]

    @classmethod
    def load(cls, path: Path) -> _LoadedChain:
        certificates = _load_pem_certificates(path, "certificate chain file")
        if len(certificates) < 2:
            raise PkiError(
                f"certificate chain file {path} must hold the signing certificate followed by its intermediate"
            )
        for child, parent in itertools.pairwise(certificates):
            if child.issuer != parent.subject:
                raise PkiError(f"certificate chain file {path} is out of order: list the leaf first, then its issuer")
        return cls(chain=tuple(certificates), chain_pem=_read_pem(path, "certificate chain file"))


def _read_pem(path: Path, what: str) -> str:
    """A PEM file's text; one that cannot be read or holds bytes that are not ASCII is unusable, as PkiError."""
    try:
        return path.read_bytes().decode("ascii")
    except UnicodeDecodeError as exc:
        raise PkiError(f"{what} {path} is not a PEM file (it holds bytes that are not ASCII)") from exc
    except OSError as exc:
        raise PkiError(f"cannot read {what} {path}: {exc.strerror or exc}") from exc


def _load_pem_certificates(path: Path, what: str) -> list[x509.Certificate]:
    if not path.is_file():
        raise PkiError(f"{what} not found: {path}")
    try:
        certificates = x509.load_pem_x509_certificates(path.read_bytes())
    except ValueError as exc:
        raise PkiError(f"{what} {path} is not a PEM certificate bundle") from exc
    return certificates


def _load_private_key(pem: str, path: Path | None) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(pem.encode("ascii"), password=None)
    except (ValueError, TypeError) as exc:
        raise PkiError(f"signing key file {path} is not an unencrypted PEM private key") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise PkiError(f"signing key file {path} must hold a P-256 (ES256) key")
    return key


def is_ca(certificate: x509.Certificate) -> bool:
    try:
        return bool(certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _check_signing_leaf(leaf: x509.Certificate, where: Path) -> None:
    if is_ca(leaf):
        raise PkiError(f"the signing certificate in {where} is a CA certificate; C2PA needs a non-CA leaf")
    try:
        usage = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        usage = None
    if usage is None or not usage.digital_signature:
        raise PkiError(f"the signing certificate in {where} lacks the digitalSignature key usage")
    try:
        ekus = {oid.dotted_string for oid in leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value}
    except x509.ExtensionNotFound:
        ekus = set()
    if not ekus & _ACCEPTED_EKUS:
        raise PkiError(
            f"the signing certificate in {where} needs the emailProtection or C2PA claim-signing extended key usage"
        )


def certificate_fingerprint(certificate: x509.Certificate) -> str:
    return hashlib.sha256(certificate.public_bytes(serialization.Encoding.DER)).hexdigest()


def common_name_of(name: x509.Name) -> str:
    names = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else ""


def common_name(certificate: x509.Certificate) -> str:
    return common_name_of(certificate.subject) or certificate.subject.rfc4514_string()


def is_development_certificate(certificate: x509.Certificate) -> bool:
    return is_development_name(common_name(certificate))


@dataclass(frozen=True, slots=True)
class PkiValidity:
    """Validity windows; `leaf_not_before`/`leaf_not_after` override the leaf's (tests use expired leaves)."""

    root_days: int = 3650
    intermediate_days: int = 1825
    leaf_days: int = 365
    leaf_not_before: dt.datetime | None = None
    leaf_not_after: dt.datetime | None = None


@dataclass(frozen=True, slots=True)
class DevelopmentPki:
    directory: Path
    chain_file: Path
    key_file: Path
    anchors_file: Path
    certificate_fingerprint: str
    signer: str

    def identity(self, tsa_url: str | None = None) -> SigningIdentity:
        return SigningIdentity.from_directory(self.directory, tsa_url=tsa_url)

    def trust(self) -> TrustConfig:
        return TrustConfig.from_directory(self.directory)


_README = """\
DEVELOPMENT-ONLY SIGNING CREDENTIALS
====================================

These files were generated by `provenance pki init` for development and testing.
They are NOT a production signing identity:

  * every certificate subject says "{organisation} Development" / "... {mark}";
  * the root and intermediate private keys were discarded after issuing the leaf;
  * files signed with them verify as `Trusted` only by a verifier configured with
    {anchors} as a trust anchor, and they are reported with development_pki = true.

Files:
  {chain}   signing certificate (leaf) followed by the intermediate (PEM)
  {key}      private key of the signing certificate (ES256 / P-256, PEM, keep private)
  {anchors}  root certificate to configure as the trust anchor (PEM)

Signing certificate: CN={signer}
  valid {not_before} .. {not_after}
  sha256 fingerprint {fingerprint}

For production, configure a certificate chain issued by a CA on the C2PA trust list and,
preferably, a signing callback backed by a KMS or HSM instead of a key file.
"""


def create_development_pki(
    directory: Path,
    *,
    organisation: str = "Provenance",
    validity: PkiValidity = PkiValidity(),
    overwrite: bool = False,
) -> DevelopmentPki:
    """Write a development root -> intermediate -> signing leaf into `directory`.

    The directory appears complete or not at all (built beside it, then renamed). An existing PKI is kept
    unless `overwrite` is set.
    """
    directory = Path(directory)
    if directory.exists() and any(directory.iterdir()) and not overwrite:
        raise PkiError(f"{directory} already holds files; pass --force to replace the development PKI")
    now = dt.datetime.now(dt.UTC)
    org = f"{organisation} Development"

    def name(role: str) -> x509.Name:
        return x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
                x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "Content Credentials"),
                x509.NameAttribute(NameOID.COMMON_NAME, f"{organisation} {role} {DEVELOPMENT_MARK}"),
            ]
        )

    root_key = ec.generate_private_key(ec.SECP256R1())
    intermediate_key = ec.generate_private_key(ec.SECP256R1())
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    start = now - dt.timedelta(minutes=5)
    root = _issue(
        name("Root CA"), root_key, name("Root CA"), root_key, start, now + dt.timedelta(days=validity.root_days), 1
    )
    intermediate = _issue(
        name("Intermediate CA"),
        intermediate_key,
        root.subject,
        root_key,
        start,
        now + dt.timedelta(days=validity.intermediate_days),
        0,
    )
    leaf_start = validity.leaf_not_before or start
    leaf_end = validity.leaf_not_after or now + dt.timedelta(days=validity.leaf_days)
    if leaf_end <= leaf_start:
        raise PkiError("the signing certificate's validity must end after it starts")
    leaf = _issue(name("Signer"), leaf_key, intermediate.subject, intermediate_key, leaf_start, leaf_end, None)
    tsa_key = ec.generate_private_key(ec.SECP256R1())
    tsa_end = now + dt.timedelta(days=validity.intermediate_days)
    tsa = _issue(name("Time-Stamp Authority"), tsa_key, intermediate.subject, intermediate_key, start, tsa_end, None)

    def pem(certificate: x509.Certificate) -> bytes:
        return certificate.public_bytes(serialization.Encoding.PEM)

    files = {
        CHAIN_FILE: pem(leaf) + pem(intermediate),
        KEY_FILE: leaf_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
        ANCHORS_FILE: pem(root),
        TSA_CHAIN_FILE: pem(tsa) + pem(intermediate),
        TSA_KEY_FILE: tsa_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
    }
    files[README_FILE] = _README.format(
        organisation=organisation,
        mark=DEVELOPMENT_MARK,
        chain=CHAIN_FILE,
        key=KEY_FILE,
        anchors=ANCHORS_FILE,
        signer=common_name(leaf),
        not_before=f"{leaf.not_valid_before_utc:%Y-%m-%d %H:%M:%SZ}",
        not_after=f"{leaf.not_valid_after_utc:%Y-%m-%d %H:%M:%SZ}",
        fingerprint=certificate_fingerprint(leaf),
    ).encode("ascii")
    _write_directory(directory, files)
    return DevelopmentPki(
        directory=directory,
        chain_file=directory / CHAIN_FILE,
        key_file=directory / KEY_FILE,
        anchors_file=directory / ANCHORS_FILE,
        certificate_fingerprint=certificate_fingerprint(leaf),
        signer=common_name(leaf),
    )


def distrust_signer(directory: Path, certificate_file: Path, reason: str) -> DistrustedSigner:
    """Add a signing certificate to the distrust list beside the trust anchors (idempotent)."""
    import json

    if not reason.strip():
        raise PkiError("distrusting a signer needs a reason, kept with the entry")
    [certificate, *_] = _load_pem_certificates(certificate_file, "certificate file")
    entry = DistrustedSigner(
        serial_number=f"{certificate.serial_number:x}",
        issuer=common_name_of(certificate.issuer) or certificate.issuer.rfc4514_string(),
        subject=common_name(certificate),
        fingerprint=certificate_fingerprint(certificate),
        reason=reason.strip()[:2000],
        distrusted_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    )
    path = Path(directory) / DISTRUST_FILE
    entries = [e for e in load_distrusted(path) if e.fingerprint != entry.fingerprint] + [entry]
    staging = path.with_name(f".{path.name}.tmp")
    staging.write_text(json.dumps([dataclasses.asdict(e) for e in entries], indent=2))
    os.replace(staging, path)
    return entry


def rotate_development_pki(directory: Path) -> DevelopmentPki:
    """A new DEVELOPMENT signer (under a new root) whose root joins the anchors; the old one keeps verifying.

    The old chain and key move to `retired/<time>/` and its root stays in the anchors, so every file signed
    before still verifies `Trusted`; to stop trusting the old signer, distrust it.
    """
    directory = Path(directory)
    if not (directory / CHAIN_FILE).is_file():
        raise PkiError(f"no signing identity in {directory} to rotate: run `provenance pki init` first")
    old_anchors = (directory / ANCHORS_FILE).read_bytes()
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
    retired = directory / RETIRED_DIR / stamp
    retired.mkdir(parents=True)
    for name in (CHAIN_FILE, KEY_FILE, TSA_CHAIN_FILE, TSA_KEY_FILE):
        if (directory / name).is_file():
            shutil.copy2(directory / name, retired / name)
    fresh = Path(tempfile.mkdtemp(prefix=".rotate-", dir=directory.parent))
    try:
        new = create_development_pki(fresh / "pki")
        for name in (CHAIN_FILE, KEY_FILE, TSA_CHAIN_FILE, TSA_KEY_FILE, README_FILE):
            os.replace(fresh / "pki" / name, directory / name)
        anchors = old_anchors + (fresh / "pki" / ANCHORS_FILE).read_bytes()
        staging = directory / f".{ANCHORS_FILE}.tmp"
        staging.write_bytes(anchors)
        os.replace(staging, directory / ANCHORS_FILE)
    finally:
        shutil.rmtree(fresh, ignore_errors=True)
    return DevelopmentPki(
        directory=directory,
        chain_file=directory / CHAIN_FILE,
        key_file=directory / KEY_FILE,
        anchors_file=directory / ANCHORS_FILE,
        certificate_fingerprint=new.certificate_fingerprint,
        signer=new.signer,
    )


def _issue(
    subject: x509.Name,
    subject_key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    not_before: dt.datetime,
    not_after: dt.datetime,
    path_length: int | None,
) -> x509.Certificate:
    """A CA certificate when `path_length` is set; otherwise a C2PA claim-signing leaf, or a time-stamping
    leaf (RFC 3161: the only, critical, extended key usage timeStamping) when the name says so."""
    is_ca = path_length is not None
    time_stamping = "Time-Stamp Authority" in common_name_of(subject)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(subject_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=path_length), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=is_ca,
                crl_sign=is_ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(subject_key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False)
    )
    if time_stamping:
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True)
    elif not is_ca:
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _write_directory(directory: Path, files: dict[str, bytes]) -> None:
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}-", dir=directory.parent))
    try:
        for filename, data in files.items():
            target = staging / filename
            private = filename in (KEY_FILE, TSA_KEY_FILE)
            descriptor = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if private else 0o644)
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
        if directory.exists():
            retired = Path(tempfile.mkdtemp(prefix=f".{directory.name}-old-", dir=directory.parent))
            os.replace(directory, retired / directory.name)
            os.replace(staging, directory)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.replace(staging, directory)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise PkiError(f"could not write the development PKI to {directory}: {exc.strerror or exc}") from exc
