"""What a platform asks of a file: its Content Credentials, and the current status of the video behind it.

The credentials library knows C2PA; the read models know the status. These adapters give the library the
lookups it needs (`StatusLookup`, `ManifestIndex`) over the projections.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from projections.queries import ReadModels
from provenance.credentials.watermark import binding_keys


class ReadModelStatus:
    """`StatusLookup` over the lineage and takedown read models."""

    def __init__(self, reads: ReadModels) -> None:
        self.reads = reads

    def status(self, video_id: UUID) -> dict[str, Any] | None:
        return self.reads.status(str(video_id))

    def resolve_soft_binding(self, alg: str, value: str) -> UUID | None:
        found = self.reads.resolve(soft_bindings=binding_keys(alg, value))
        return UUID(found) if found else None


class ReadModelManifestIndex:
    """`ManifestIndex` over the signatures recorded in the lineage read model."""

    def __init__(self, reads: ReadModels) -> None:
        self.reads = reads

    def manifest_blob(self, manifest_id: str) -> str | None:
        video_id = self.reads.resolve(manifest_id=manifest_id)
        if video_id is None:
            return None
        signature = self.reads.video(video_id)["signature"] or {}
        sha = signature.get("manifest_sha256")
        return str(sha) if sha else None

    def manifests_by_binding(self, alg: str, value: str) -> list[str]:
        return self._manifest_of(self.reads.resolve(soft_bindings=binding_keys(alg, value)))

    def manifests_by_content(self, sha256: str) -> list[str]:
        return self._manifest_of(self.reads.resolve(sha256=sha256))

    def _manifest_of(self, video_id: str | None) -> list[str]:
        if video_id is None:
            return []
        manifest_id = self.reads.video(video_id)["manifest_id"]
        return [manifest_id] if manifest_id else []
