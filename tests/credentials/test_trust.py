"""The trust anchors: parsed once per content, the note beside them used only for that exact content."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from provenance.credentials.errors import PkiError
from provenance.credentials.pki import DevelopmentPki, create_development_pki
from provenance.credentials.trust import TrustConfig, anchors_in


def _pems(path: Path) -> list[str]:
    return [
        c.public_bytes(serialization.Encoding.PEM).decode() for c in x509.load_pem_x509_certificates(path.read_bytes())
    ]


def _note(anchors: Path) -> Path:
    return anchors.with_name(f".{anchors.name}.anchors.json")


@pytest.fixture
def anchors(tmp_path: Path, pki: DevelopmentPki, other_pki: DevelopmentPki) -> Path:
    """A bundle of two development roots, in a directory of its own."""
    bundle = tmp_path / "trust-anchors.pem"
    bundle.write_bytes(pki.anchors_file.read_bytes() + other_pki.anchors_file.read_bytes())
    return bundle


def test_the_sdk_gets_the_files_own_certificates_and_the_second_read_needs_no_parser(anchors: Path) -> None:
    trust = TrustConfig(anchor_files=(anchors,))
    assert trust.anchors_pem() == "".join(_pems(anchors))
    assert trust.development_kinds() == {True}
    assert json.loads(_note(anchors).read_text())["development"] == [True, True]

    probe = (
        "import sys\n"
        "from pathlib import Path\n"
        "from provenance.credentials.trust import TrustConfig\n"
        f"print(TrustConfig(anchor_files=(Path({str(anchors)!r}),)).anchors_pem(), end='')\n"
        "assert 'cryptography' not in sys.modules, 'the anchors were parsed again'\n"
    )
    again = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert again.returncode == 0, again.stderr
    assert again.stdout == trust.anchors_pem()


def test_a_note_for_other_content_is_not_used(anchors: Path, tmp_path: Path) -> None:
    TrustConfig(anchor_files=(anchors,)).anchors()  # the note for this content
    production = create_development_pki(tmp_path / "production-like")
    leaf = production.chain_file.read_bytes().split(b"-----END CERTIFICATE-----")[0] + b"-----END CERTIFICATE-----\n"
    with anchors.open("ab") as bundle:  # a signer's certificate among the roots: not a CA
        bundle.write(leaf)
    with pytest.raises(PkiError, match="not a CA"):
        anchors_in(anchors)


@pytest.mark.parametrize(
    "forged",
    [
        {"sha256": "0" * 64, "development": [False, False]},  # another file's note
        {"development": [False, False]},  # no digest
        "digest of this file, three flags",  # more certificates than the file holds
        "not json",
    ],
)
def test_a_note_that_does_not_fit_the_file_is_ignored(anchors: Path, forged: object) -> None:
    import hashlib

    digest = hashlib.sha256(anchors.read_bytes()).hexdigest()
    if forged == "digest of this file, three flags":
        _note(anchors).write_text(json.dumps({"sha256": digest, "development": [False, False, False]}))
    elif forged == "not json":
        _note(anchors).write_text("{")
    else:
        _note(anchors).write_text(json.dumps(forged))
    assert [a.development for a in anchors_in(anchors)] == [True, True]


def test_anchors_are_read_when_the_note_cannot_be_written(anchors: Path) -> None:
    _note(anchors).mkdir()  # nothing can be written at the note's place
    assert [a.development for a in anchors_in(anchors)] == [True, True]
    assert sorted(p.name for p in anchors.parent.iterdir()) == sorted([anchors.name, _note(anchors).name])


def test_a_distrusted_signer_is_known_by_its_issuer_with_or_without_a_common_name() -> None:
    from provenance.credentials.trust import DistrustedSigner

    def entry(issuer: str) -> DistrustedSigner:
        return DistrustedSigner(
            "0a1f", issuer, "Example Signer", "sha256:...", "key leaked", "2026-12-04T00:00:00+00:00"
        )

    assert entry("Issuing CA").matches("0A1F", {"O": "Example", "CN": "Issuing CA"})
    assert not entry("Issuing CA").matches("0a1e", {"CN": "Issuing CA"})
    # an issuing CA without a common name is recorded by its whole name, as `pki distrust` records it
    assert entry("OU=Issuing CA 3,O=Example").matches("0a1f", {"O": "Example", "OU": "Issuing CA 3"})
    assert not entry("OU=Issuing CA 3,O=Example").matches("0a1f", {"O": "Example", "OU": "Issuing CA 4"})
