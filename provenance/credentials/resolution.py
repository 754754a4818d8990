"""Manifest recovery in the shape of the C2PA soft-binding resolution API.

The API's three operations map onto functions: `matches_by_binding` (GET /matches/byBinding),
`matches_by_content` (POST /matches/byContent: here a local file, whose watermark is decoded, with an exact
sha256 match as a fallback) and `manifest` (GET /manifests/{manifestId}, the manifest store bytes,
`application/c2pa`). Stores live in the blob store under their sha256, which is the `manifest_sha256` of
the `VideoSigned` event, so the index needs no bytes of its own.

Re-attachment: c2pa-python 0.38 cannot write an existing manifest store into an asset (only
`Builder.sign` embeds, and it makes a new claim), so a stored manifest is re-attached as a sidecar:
`verify_with_stored_manifest` validates the file against it. That yields `Trusted` for a file whose
manifest box was blanked but whose media bytes are unchanged, and a hash mismatch for a re-encoded copy,
which is the truth: the re-encoded bytes are not the bytes that were signed.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from kernel.blobstore import BlobStore, sha256_file
from kernel.errors import InvalidInput, NotFound
from provenance.credentials.errors import CredentialsError
from provenance.credentials.trust import TrustConfig
from provenance.credentials.verify import StatusLookup, VerificationReport, verify_file
from provenance.credentials.watermark import ALG, decode_watermarks, payload_from_value, soft_binding_value

MANIFEST_MEDIA_TYPE = "application/c2pa"
_DEFAULT_MAX_RESULTS = 10


class ManifestIndex(Protocol):
    """Lookups the resolver needs; the platform implements them over the projection of `VideoSigned`."""

    def manifest_blob(self, manifest_id: str) -> str | None:
        """sha256 of the stored manifest store of `manifest_id`."""
        ...

    def manifests_by_binding(self, alg: str, value: str) -> list[str]: ...

    def manifests_by_content(self, sha256: str) -> list[str]: ...


@dataclass(frozen=True, slots=True)
class ManifestRecord:
    """One signed video as the index sees it: the `VideoSigned` payload, reduced."""

    manifest_id: str
    manifest_sha256: str
    signed_sha256: str
    alg: str
    value: str

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> ManifestRecord:
        binding = payload["soft_binding"]
        return cls(
            manifest_id=payload["manifest_id"],
            manifest_sha256=payload["manifest_sha256"],
            signed_sha256=payload["signed_sha256"],
            alg=binding["alg"],
            value=binding["value"],
        )


class InMemoryManifestIndex:
    """A `ManifestIndex` in dictionaries, for tests and single-process demos."""

    def __init__(self) -> None:
        self._blobs: dict[str, str] = {}
        self._by_binding: dict[tuple[str, str], list[str]] = defaultdict(list)
        self._by_content: dict[str, list[str]] = defaultdict(list)

    def add(self, record: ManifestRecord) -> None:
        self._blobs[record.manifest_id] = record.manifest_sha256
        for bucket in (self._by_binding[(record.alg, record.value)], self._by_content[record.signed_sha256]):
            if record.manifest_id not in bucket:
                bucket.append(record.manifest_id)

    def manifest_blob(self, manifest_id: str) -> str | None:
        return self._blobs.get(manifest_id)

    def manifests_by_binding(self, alg: str, value: str) -> list[str]:
        return list(self._by_binding.get((alg, value), []))

    def manifests_by_content(self, sha256: str) -> list[str]:
        return list(self._by_content.get(sha256, []))


@dataclass(frozen=True, slots=True)
class Match:
    manifest_id: str
    matched_by: str
    """`binding`, `watermark` or `sha256`."""


@dataclass(frozen=True, slots=True)
class MatchesResponse:
    matches: tuple[Match, ...]
    soft_binding: dict[str, str] | None = None
    """The binding that was looked up (decoded from the content for `matches_by_content`: the first found)."""
    conflict: str | None = None
    """Set when the content carries the watermarks of several signed videos (a splice): it names each manifest."""

    def to_json(self) -> dict[str, Any]:
        """The soft-binding resolution API's response body (with `conflict` beside the matches when there is one)."""
        body: dict[str, Any] = {"matches": [{"manifestId": m.manifest_id} for m in self.matches]}
        if self.conflict:
            body["conflict"] = self.conflict
        return body


class ManifestResolver:
    def __init__(self, index: ManifestIndex, blobs: BlobStore, trust: TrustConfig | None = None) -> None:
        self.index = index
        self.blobs = blobs
        self.trust = trust

    def matches_by_binding(self, alg: str, value: str, max_results: int = _DEFAULT_MAX_RESULTS) -> MatchesResponse:
        if not alg or not value:
            raise InvalidInput("a soft-binding query needs both alg and value")
        if alg == ALG and payload_from_value(value) is None:
            raise InvalidInput(f"{value!r} is not a base64 {ALG} value")
        found = self.index.manifests_by_binding(alg, value)[: max(0, max_results)]
        return MatchesResponse(
            matches=tuple(Match(m, "binding") for m in found), soft_binding={"alg": alg, "value": value}
        )

    def matches_by_content(self, path: Path, max_results: int = _DEFAULT_MAX_RESULTS) -> MatchesResponse:
        """Manifests for a file: an exact sha256 match first, then its watermarks (every one found, first found
        first; more than one signed video's is a `conflict`)."""
        path = Path(path)
        if not path.is_file():  # a file that cannot be used is bad input, as `verify` says it
            raise InvalidInput(f"no such file: {path}" if not path.exists() else f"{path} is not a file")
        matches = [Match(m, "sha256") for m in self.index.manifests_by_content(sha256_file(path))]
        binding: dict[str, str] | None = None
        try:
            payloads = decode_watermarks(path)
        except CredentialsError:
            payloads = ()
        marked: list[list[str]] = []
        for payload in payloads:
            value = soft_binding_value(payload)
            binding = binding or {"alg": ALG, "value": value}
            found = self.index.manifests_by_binding(ALG, value)
            marked += [found] if found else []
            known = {m.manifest_id for m in matches}
            matches += [Match(m, "watermark") for m in found if m not in known]
        conflict = None
        if len(marked) > 1:
            named = "; ".join(", ".join(manifests) for manifests in marked)
            conflict = f"the content carries the watermarks of {len(marked)} signed videos, manifests: {named}"
        return MatchesResponse(matches=tuple(matches[: max(0, max_results)]), soft_binding=binding, conflict=conflict)

    def manifest(self, manifest_id: str) -> bytes:
        """The stored manifest store (`application/c2pa`) of `manifest_id`."""
        sha256 = self.index.manifest_blob(manifest_id)
        if sha256 is None:
            raise NotFound(f"no manifest {manifest_id} in the index")
        return self.blobs.read_bytes(sha256)

    def verify_with_stored_manifest(
        self, path: Path, manifest_id: str, status_lookup: StatusLookup | None = None
    ) -> VerificationReport:
        """Validate `path` against the stored manifest store `manifest_id` (sidecar re-attachment)."""
        return verify_file(path, self.trust, status_lookup, manifest_store=self.manifest(manifest_id))
