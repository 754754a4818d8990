from __future__ import annotations

import datetime as dt
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from provenance.credentials.errors import PkiError
from provenance.credentials.pki import (
    CHAIN_FILE,
    KEY_FILE,
    README_FILE,
    TSA_CHAIN_FILE,
    TSA_KEY_FILE,
    DevelopmentPki,
    PkiValidity,
    SigningIdentity,
    create_development_pki,
)
from provenance.credentials.trust import ANCHORS_FILE, TrustConfig


def _chain(pki: DevelopmentPki) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(pki.chain_file.read_bytes())


def test_development_pki_issues_a_c2pa_signing_leaf_under_an_intermediate(pki: DevelopmentPki) -> None:
    leaf, intermediate = _chain(pki)
    (root,) = x509.load_pem_x509_certificates(pki.anchors_file.read_bytes())
    assert leaf.issuer == intermediate.subject and intermediate.issuer == root.subject
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert leaf.extensions.get_extension_for_class(x509.KeyUsage).value.digital_signature
    ekus = list(leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    assert ekus == [ExtendedKeyUsageOID.EMAIL_PROTECTION]
    assert intermediate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    root.verify_directly_issued_by(root)
    intermediate.verify_directly_issued_by(root)
    leaf.verify_directly_issued_by(intermediate)


def test_development_pki_is_labelled_as_such_everywhere(pki: DevelopmentPki) -> None:
    for certificate in _chain(pki):
        organisation = certificate.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value
        common_name = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
        assert str(organisation).endswith("Development")
        assert "DEVELOPMENT ONLY" in str(common_name)
    readme = (pki.directory / README_FILE).read_text()
    assert "DEVELOPMENT-ONLY" in readme and pki.certificate_fingerprint in readme
    assert pki.identity().is_development()


def test_private_key_is_readable_by_its_owner_only(pki: DevelopmentPki) -> None:
    mode = stat.S_IMODE(pki.key_file.stat().st_mode)
    assert mode & 0o077 == 0


def test_identity_from_directory_checks_out(pki: DevelopmentPki) -> None:
    identity = SigningIdentity.from_directory(pki.directory)
    identity.check()
    assert identity.certificate_fingerprint() == pki.certificate_fingerprint
    assert identity.signer_name() == pki.signer
    assert identity.tsa_url is None


def test_existing_pki_is_not_overwritten_unless_asked(tmp_path: Path) -> None:
    first = create_development_pki(tmp_path / "pki")
    with pytest.raises(PkiError, match="--force"):
        create_development_pki(tmp_path / "pki")
    second = create_development_pki(tmp_path / "pki", overwrite=True)
    assert second.certificate_fingerprint != first.certificate_fingerprint
    assert sorted(p.name for p in (tmp_path / "pki").iterdir()) == sorted(
        [ANCHORS_FILE, CHAIN_FILE, KEY_FILE, README_FILE, TSA_CHAIN_FILE, TSA_KEY_FILE]
    )
    assert [p.name for p in tmp_path.iterdir()] == ["pki"]


def test_expired_leaf_is_refused(tmp_path: Path) -> None:
    now = dt.datetime.now(dt.UTC)
    expired = create_development_pki(
        tmp_path / "expired",
        validity=PkiValidity(leaf_not_before=now - dt.timedelta(days=30), leaf_not_after=now - dt.timedelta(days=1)),
    )
    with pytest.raises(PkiError, match="expired on"):
        expired.identity().check()


def test_key_that_does_not_match_the_certificate_is_refused(tmp_path: Path, pki: DevelopmentPki) -> None:
    other = create_development_pki(tmp_path / "other")
    mixed = SigningIdentity(chain_file=pki.chain_file, key_file=other.key_file)
    with pytest.raises(PkiError, match="does not match"):
        mixed.check()


def test_chain_without_intermediate_is_refused(tmp_path: Path, pki: DevelopmentPki) -> None:
    leaf_only = tmp_path / "leaf.pem"
    leaf_only.write_text(
        pki.chain_file.read_text().split("-----END CERTIFICATE-----")[0] + "-----END CERTIFICATE-----\n"
    )
    with pytest.raises(PkiError, match="intermediate"):
        SigningIdentity(chain_file=leaf_only, key_file=pki.key_file).check()


def test_leaf_is_not_accepted_as_a_trust_anchor(pki: DevelopmentPki) -> None:
    with pytest.raises(PkiError, match="not a CA"):
        TrustConfig(anchor_files=(pki.chain_file,)).anchors_pem()
    with pytest.raises(PkiError, match="not found"):
        TrustConfig(anchor_files=(pki.directory / "missing.pem",)).anchors_pem()


@pytest.mark.parametrize("garbled", [KEY_FILE, CHAIN_FILE, ANCHORS_FILE])
def test_a_garbled_file_of_the_signing_identity_is_refused_by_its_check(
    tmp_path: Path, pki: DevelopmentPki, garbled: str
) -> None:
    """Bytes that are not ASCII (a damaged disk, a binary copied over) are a `PkiError`, as any other unusable
    file is, and the trust anchors are checked too: a signer refuses to start instead of failing on every video."""
    import os
    import shutil

    directory = shutil.copytree(pki.directory, tmp_path / "pki")
    (directory / garbled).write_bytes(b"\xe7" + os.urandom(499))
    with pytest.raises(PkiError, match=garbled.replace(".", r"\.")):
        SigningIdentity.from_directory(directory).check()


def test_a_key_file_with_bytes_that_are_not_ascii_is_a_pki_error(tmp_path: Path, pki: DevelopmentPki) -> None:
    damaged = tmp_path / "key.pem"
    damaged.write_bytes(pki.key_file.read_bytes() + b"\xff\xfe")
    with pytest.raises(PkiError, match=r"key\.pem"):
        SigningIdentity(chain_file=pki.chain_file, key_file=damaged).key_pem()
