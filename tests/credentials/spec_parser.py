"""An independent reader of C2PA manifests in MP4, written from the specification with only `cbor2` and
`cryptography`: it shares no code with the product and none with the C2PA SDK, so when both agree on a file,
the file says what the specification says it says.

What it reads (C2PA 2.x, Annex A and the JUMBF chapters): the top-level `uuid` box with the C2PA UUID (its
purpose string, the merkle offset, then the JUMBF manifest store), JUMBF superboxes (`jumb`) with their
description boxes (`jumd`: type UUID, toggles, label), the claim (`c2pa.claim.v2`, CBOR), the assertions
(CBOR), the claim signature (`c2pa.signature`: a tagged COSE_Sign1 with a detached payload, the claim), and
the BMFF hard binding (`c2pa.hash.bmff.v3`: SHA-256 over every top-level box not excluded, each preceded by its
file offset as a 64-bit big-endian integer).
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

C2PA_UUID = bytes.fromhex("d8fec3d61b0e483c92975828877ec481")
_COSE_SIGN1_TAG = 18
_X5CHAIN = 33
_ALG = 1
_ES256 = -7


@dataclass
class Box:
    kind: str
    label: str | None
    payload: bytes
    """The whole box content after its 8-byte header (for a superbox: description and children)."""
    children: list[Box] = field(default_factory=list)
    data: bytes = b""
    """For a content box: its payload."""

    def child(self, label: str) -> Box:
        for box in self.children:
            if box.label == label:
                return box
        raise KeyError(f"no {label} box")

    def content(self) -> bytes:
        """The data of the first content box of a superbox (its `cbor`, `json` or `bidb` box)."""
        return next(b.data for b in self.children if b.kind != "jumb")


def _boxes(data: bytes) -> list[tuple[str, bytes]]:
    found, at = [], 0
    while at + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[at : at + 8])
        header = 8
        if size == 1:
            size, header = struct.unpack(">Q", data[at + 8 : at + 16])[0], 16
        elif size == 0:
            size = len(data) - at
        if size < header or at + size > len(data):
            raise ValueError(f"box {kind!r} at {at} overruns its container")
        found.append((kind.decode("latin-1"), data[at + header : at + size]))
        at += size
    return found


def _superbox(payload: bytes) -> Box:
    [(kind, description), *rest] = _boxes(payload)
    if kind != "jumd":
        raise ValueError("a JUMBF superbox starts with its description box")
    toggles = description[16]
    label = None
    if toggles & 0x02:  # a label follows, NUL-terminated
        end = description.index(b"\0", 17)
        label = description[17:end].decode("utf-8")
    box = Box("jumb", label, payload)
    for child_kind, child_payload in rest:
        if child_kind == "jumb":
            box.children.append(_superbox(child_payload))
        else:
            box.children.append(Box(child_kind, None, child_payload, data=child_payload))
    return box


def manifest_store(path: Path) -> Box:
    """The JUMBF manifest store embedded in an MP4 file."""
    for kind, payload in _boxes(Path(path).read_bytes()):
        if kind == "uuid" and payload[:16] == C2PA_UUID:
            body = payload[16 + 4 :]  # after the UUID: version and flags
            end = body.index(b"\0")
            if body[:end] != b"manifest":
                continue
            jumbf = body[end + 1 + 8 :]  # after the purpose string: the 64-bit merkle offset
            [(jumb, store)] = _boxes(jumbf)
            assert jumb == "jumb"
            return _superbox(store)
    raise LookupError(f"{path} has no C2PA manifest store")


@dataclass
class Manifest:
    label: str
    claim: dict[str, Any]
    claim_bytes: bytes
    assertions: dict[str, Box]
    signature: list[Any]
    """The COSE_Sign1 array: protected header (bytes), unprotected header, payload (None), signature."""

    def assertion(self, label: str) -> Any:
        import cbor2

        return cbor2.loads(self.assertions[label].content())

    def certificates(self) -> list[Any]:
        """The signer's chain from the x5chain header (protected, or unprotected), leaf first."""
        import cbor2
        from cryptography import x509

        headers = {**self.signature[1], **cbor2.loads(self.signature[0])}
        chain = headers[_X5CHAIN]
        return [x509.load_der_x509_certificate(c) for c in ([chain] if isinstance(chain, bytes) else chain)]

    def signature_verifies(self) -> bool:
        """COSE_Sign1 over the detached claim: Sig_structure ["Signature1", protected, b"", claim]."""
        import cbor2
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

        protected, _, _, signature = self.signature
        assert cbor2.loads(protected)[_ALG] == _ES256, "this reader checks ES256 signatures"
        to_be_signed = cbor2.dumps(["Signature1", protected, b"", self.claim_bytes])
        r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
        key = self.certificates()[0].public_key()
        try:
            key.verify(encode_dss_signature(r, s), to_be_signed, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            return False
        return True

    def assertion_hashes_match(self) -> bool:
        """Every assertion the claim lists hashes (SHA-256, over its superbox content) to the claim's value."""
        for reference in self.claim.get("created_assertions", []) + self.claim.get("gathered_assertions", []):
            label = reference["url"].rsplit("/", 1)[-1]
            box = self.assertions[label]
            if hashlib.sha256(box.payload).digest() != reference["hash"]:
                return False
        return True


def bmff_hash_matches(path: Path, binding: dict[str, Any]) -> bool:
    """Whether the file's top-level boxes hash to the value of its `c2pa.hash.bmff.v3` assertion."""
    excluded: set[str] = set()
    uuid_exclusions: list[bytes] = []
    for exclusion in binding.get("exclusions", []):
        kind = exclusion["xpath"].lstrip("/")
        if kind == "uuid":
            uuid_exclusions += [d["value"] for d in exclusion.get("data", []) if d.get("offset") == 8]
        else:
            excluded.add(kind)
    assert binding.get("alg", "sha256") == "sha256" and "merkle" not in binding, "a plain SHA-256 binding"
    data = Path(path).read_bytes()
    digest = hashlib.sha256()
    at = 0
    for kind, payload in _boxes(data):
        size = len(payload) + 8
        box = data[at : at + size]
        skip = kind in excluded or (kind == "uuid" and payload[:16] in uuid_exclusions)
        if not skip:
            digest.update(struct.pack(">Q", at) + box)
        at += size
    return digest.digest() == binding["hash"]


def manifests(path: Path) -> tuple[str, dict[str, Manifest]]:
    """The active manifest's label (the last one in the store) and every manifest by label."""
    import cbor2

    store = manifest_store(path)
    found: dict[str, Manifest] = {}
    for box in store.children:
        if box.kind != "jumb" or box.label is None:
            continue
        claim_box = next(b for b in box.children if b.label in ("c2pa.claim.v2", "c2pa.claim"))
        claim_bytes = claim_box.content()
        signature = cbor2.loads(box.child("c2pa.signature").content())
        if isinstance(signature, cbor2.CBORTag):
            assert signature.tag == _COSE_SIGN1_TAG
            signature = signature.value
        assertions = {a.label: a for a in box.child("c2pa.assertions").children if a.label}
        found[box.label] = Manifest(box.label, cbor2.loads(claim_bytes), claim_bytes, assertions, list(signature))
    return list(found)[-1], found
