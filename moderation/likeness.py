"""Likeness: whose faces appear in a video, and whether the creator may show them.

Faces are found with OpenCV's Haar frontal-face cascade, cropped with a margin and embedded with the shared
CLIP backbone, then compared by cosine similarity with the reference embeddings of the cameos the caller
names and of a configured list of protected people. The scorer only measures similarity; what a match
means (a cameo without a live grant or a protected person blocks; a cameo under a grant is recorded and
allowed) is carried in each track's rule and applied by `moderation.decision`.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from kernel.errors import InvalidInput
from moderation.errors import ModelLoadError
from moderation.scores import OnMatch, ScorerSpec, ScoreTrack

if TYPE_CHECKING:
    from moderation.backbone import Backbone
    from moderation.likeness_index import LikenessIndex
    from moderation.sampling import FrameSample

PROTECTED_FORMAT = "provenance-protected-people/1"
CASCADE_FILE = "haarcascade_frontalface_default.xml"


@dataclass(frozen=True)
class LikenessConfig:
    match_threshold: float = 0.88
    review_band: float = 0.04
    min_face_px: int = 40
    scale_factor: float = 1.1
    min_neighbors: int = 5
    crop_margin: float = 0.15
    max_faces_per_frame: int = 8
    version: str = "likeness/1"


class FaceDetector:
    """Haar cascade frontal faces, largest first; boxes below `min_face_px` are ignored."""

    def __init__(self, config: LikenessConfig) -> None:
        import cv2

        self.config = config
        folder = getattr(getattr(cv2, "data", None), "haarcascades", None)
        path = Path(folder) / CASCADE_FILE if folder else None
        if path is None or not path.is_file():
            raise ModelLoadError(
                "OpenCV's Haar face cascade is missing; install opencv-python-headless 4.x "
                "(the 5.x wheels do not ship cascades)"
            )
        self._cascade = cv2.CascadeClassifier(str(path))
        if self._cascade.empty():
            raise ModelLoadError(f"cannot load the Haar face cascade from {path}")

    def boxes(self, image_rgb: np.ndarray) -> list[tuple[int, int, int, int]]:
        import cv2

        gray = cv2.cvtColor(image_rgb, cv2.COLOR_RGB2GRAY)
        found = self._cascade.detectMultiScale(
            gray,
            scaleFactor=self.config.scale_factor,
            minNeighbors=self.config.min_neighbors,
            minSize=(self.config.min_face_px, self.config.min_face_px),
        )
        boxes = [tuple(int(v) for v in box) for box in found]
        boxes.sort(key=lambda b: b[2] * b[3], reverse=True)
        return [(b[0], b[1], b[2], b[3]) for b in boxes[: self.config.max_faces_per_frame]]

    def crops(self, image_rgb: np.ndarray) -> list[np.ndarray]:
        height, width = image_rgb.shape[:2]
        out: list[np.ndarray] = []
        for x, y, w, h in self.boxes(image_rgb):
            margin = round(self.config.crop_margin * max(w, h))
            top, bottom = max(0, y - margin), min(height, y + h + margin)
            left, right = max(0, x - margin), min(width, x + w + margin)
            out.append(np.ascontiguousarray(image_rgb[top:bottom, left:right]))
        return out


@dataclass(frozen=True)
class CameoReference:
    """A cameo's reference likeness: an image (array or file) with one face, or ready embeddings.

    Embeddings must come from the same backbone; give `model_hash` to have that checked.
    """

    image: np.ndarray | None = None
    image_path: Path | None = None
    embedding: np.ndarray | None = None
    model_hash: str | None = None

    @classmethod
    def from_image(cls, image: np.ndarray) -> CameoReference:
        return cls(image=image)

    @classmethod
    def from_path(cls, path: Path) -> CameoReference:
        return cls(image_path=Path(path))

    @classmethod
    def from_embedding(cls, embedding: np.ndarray, model_hash: str | None = None) -> CameoReference:
        return cls(embedding=np.asarray(embedding, dtype=np.float32), model_hash=model_hash)


@dataclass(frozen=True)
class Identity:
    key: str
    kind: Literal["cameo", "protected"]
    embeddings: np.ndarray
    grant_id: str | None = None


class ProtectedPeople:
    """Named people whose likeness may not be generated, as reference embeddings for one backbone."""

    def __init__(self, embeddings: Mapping[str, np.ndarray], *, backbone_model_hash: str) -> None:
        self.embeddings = {name: np.asarray(e, dtype=np.float32) for name, e in embeddings.items()}
        self.backbone_model_hash = backbone_model_hash

    @classmethod
    def load(cls, path: Path, backbone: Backbone) -> ProtectedPeople:
        from safetensors import safe_open

        path = Path(path)
        if not path.is_file():
            raise ModelLoadError(f"protected people file not found: {path}")
        try:
            with safe_open(str(path), framework="numpy") as handle:
                metadata = handle.metadata() or {}
                embeddings = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
        except Exception as exc:
            raise ModelLoadError(f"cannot read protected people file {path.name}: corrupt or wrong format") from exc
        if metadata.get("format") != PROTECTED_FORMAT:
            raise ModelLoadError(f"{path.name} is not a {PROTECTED_FORMAT} file")
        if metadata.get("backbone_model_hash") != backbone.model_hash:
            raise ModelLoadError(f"{path.name} was built with another backbone; rebuild it for these weights")
        for name, array in embeddings.items():
            if array.ndim != 2 or array.shape[1] != backbone.embed_dim:
                raise ModelLoadError(f"{path.name}: embeddings of {name!r} have shape {array.shape}")
        return cls(embeddings, backbone_model_hash=backbone.model_hash)

    def save(self, path: Path) -> Path:
        from safetensors.numpy import save_file

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        metadata = {"format": PROTECTED_FORMAT, "backbone_model_hash": self.backbone_model_hash}
        handle, temp_name = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
        os.close(handle)
        try:
            save_file({k: np.ascontiguousarray(v) for k, v in self.embeddings.items()}, temp_name, metadata=metadata)
            os.replace(temp_name, path)
        except BaseException:
            Path(temp_name).unlink(missing_ok=True)
            raise
        return path


class LikenessScorer:
    """Embeds faces and references with the shared backbone; one `LikenessObserver` per video."""

    def __init__(self, backbone: Backbone, config: LikenessConfig | None = None) -> None:
        self.backbone = backbone
        self.config = config or LikenessConfig()
        self.detector = FaceDetector(self.config)
        self._reference_cache: dict[str, np.ndarray] = {}

    def face_embeddings(self, image_rgb: np.ndarray) -> np.ndarray:
        """Embeddings of every face found in an image, largest face first."""
        crops = self.detector.crops(image_rgb)
        return self.backbone.encode_images(crops)

    def reference_embeddings(self, cameo_id: str, reference: CameoReference) -> np.ndarray:
        """(k, D) unit embeddings of a cameo's reference, from the largest face of its image."""
        from moderation.backbone import l2_normalize
        from moderation.sampling import load_image

        if reference.embedding is not None:
            if reference.model_hash is not None and reference.model_hash != self.backbone.model_hash:
                raise InvalidInput(f"reference embedding of cameo {cameo_id} comes from another backbone")
            array = np.atleast_2d(np.asarray(reference.embedding, dtype=np.float32))
            if array.ndim != 2 or array.shape[1] != self.backbone.embed_dim or not np.all(np.isfinite(array)):
                raise InvalidInput(
                    f"reference embedding of cameo {cameo_id} has shape {array.shape}; "
                    f"expected (k, {self.backbone.embed_dim})"
                )
            return l2_normalize(array)
        if reference.image is not None:
            image = np.asarray(reference.image)
        elif reference.image_path is not None:
            image = load_image(reference.image_path)
        else:
            raise InvalidInput(f"cameo {cameo_id} has neither a reference image nor an embedding")
        digest = hashlib.sha256(image.tobytes() + str(image.shape).encode()).hexdigest()
        cached = self._reference_cache.get(digest)
        if cached is not None:
            return cached
        faces = self.face_embeddings(image)
        if len(faces) == 0:
            raise InvalidInput(f"no face found in the reference image of cameo {cameo_id}")
        embedding = faces[:1]
        self._reference_cache[digest] = embedding
        return embedding

    def identities(
        self,
        cameos: Mapping[str, CameoReference],
        grants: Mapping[str, str],
        protected: ProtectedPeople | None,
    ) -> list[Identity]:
        out = [
            Identity(f"cameo:{cameo_id}", "cameo", self.reference_embeddings(cameo_id, ref), grants.get(cameo_id))
            for cameo_id, ref in cameos.items()
        ]
        if protected is not None:
            out.extend(Identity(f"protected:{name}", "protected", e) for name, e in protected.embeddings.items())
        return out

    def observe_video(self, identities: Sequence[Identity], index: LikenessIndex | None = None) -> LikenessObserver:
        return LikenessObserver(self, identities, index)


class LikenessObserver:
    """Per-frame best similarity of the faces in each sample to each identity."""

    def __init__(
        self, scorer: LikenessScorer, identities: Sequence[Identity], index: LikenessIndex | None = None
    ) -> None:
        self._scorer = scorer
        self._identities = list(identities)
        self._index = index
        self._timestamps: list[float] = []
        self._rows: list[np.ndarray] = []
        self._closest: list[np.ndarray] = []
        """Per sample, the closest registered cameo of the index (NaN without a face)."""
        self.faces_detected = 0

    def observe(self, samples: Sequence[FrameSample]) -> None:
        crops: list[np.ndarray] = []
        owners: list[int] = []
        for row, sample in enumerate(samples):
            found = self._scorer.detector.crops(sample.image)
            crops.extend(found)
            owners.extend([row] * len(found))
        self.faces_detected += len(crops)
        faces = self._scorer.backbone.encode_images(crops) if crops else np.zeros((0, 0), dtype=np.float32)
        closest = np.full(len(samples), np.nan)
        if crops and self._index is not None:
            self._add_index_hits(faces, owners, closest)
        scores = np.full((len(samples), len(self._identities)), np.nan)
        if crops and self._identities:
            for column, identity in enumerate(self._identities):
                similarity = (faces @ identity.embeddings.T).max(axis=1)
                for owner, value in zip(owners, similarity, strict=True):
                    current = scores[owner, column]
                    scores[owner, column] = value if np.isnan(current) else max(current, value)
        self._timestamps.extend(s.timestamp_s for s in samples)
        self._rows.append(scores)
        self._closest.append(closest)

    def _add_index_hits(self, faces: np.ndarray, owners: list[int], closest: np.ndarray) -> None:
        """Cameos of the index that some face comes near become identities (from this batch on)."""
        assert self._index is not None
        config = self._scorer.config
        hits, best = self._index.search(faces, config.match_threshold - config.review_band)
        for owner, value in zip(owners, best, strict=True):
            closest[owner] = value if np.isnan(closest[owner]) else max(closest[owner], value)
        known = {identity.key for identity in self._identities}
        for key, person, embedding in hits:
            if f"cameo:{key}" not in known:
                grant = self._index.grant_for(key, person)
                self._identities.append(Identity(f"cameo:{key}", "cameo", embedding, grant))

    def tracks(self, duration_s: float) -> list[ScoreTrack]:
        """A track for every cameo; for protected people, only those near or over the threshold, else
        one track with the closest protected person so the record shows the check ran."""
        config = self._scorer.config
        width = len(self._identities)  # identities the index added later have no score for earlier samples
        rows = [np.pad(r, ((0, 0), (0, width - r.shape[1])), constant_values=np.nan) for r in self._rows]
        matrix = np.concatenate(rows, axis=0) if rows else np.zeros((0, width))
        times = tuple(self._timestamps)
        review_level = config.match_threshold - config.review_band
        tracks: list[ScoreTrack] = []
        protected_columns: list[int] = []
        for column, identity in enumerate(self._identities):
            column_scores = tuple(float(v) for v in matrix[:, column])
            if identity.kind == "protected":
                protected_columns.append(column)
                observed = [v for v in column_scores if not np.isnan(v)]
                if not observed or max(observed) < review_level:
                    continue
            spec = self._spec(identity)
            tracks.append(ScoreTrack(spec, times, column_scores, duration_s))
        if protected_columns and not any(t.spec.detail.get("kind") == "protected" for t in tracks):
            block = matrix[:, protected_columns]
            closest = tuple(float(np.nanmax(row)) if not np.all(np.isnan(row)) else float("nan") for row in block)
            detail = {"kind": "protected", "people_compared": len(protected_columns), "faces": self.faces_detected}
            spec = self._summary_spec("protected_people", "closest protected person", "block", detail)
            tracks.append(ScoreTrack(spec, times, closest, duration_s))
        if self._index is not None:
            tracks.append(self._index_track(times, duration_s))
        return tracks

    def _index_track(self, times: tuple[float, ...], duration_s: float) -> ScoreTrack:
        """The index check on record: the closest registered cameo per sample, over how many were compared.
        It never decides by itself: a cameo that came near has a track of its own, with its rule."""
        assert self._index is not None
        closest = np.concatenate(self._closest) if self._closest else np.zeros(0)
        detail = {"kind": "index", "cameos_compared": len(self._index), "faces": self.faces_detected}
        description = "closest registered cameo (each one that came near is scored on its own)"
        spec = self._summary_spec("registered_cameos", description, "allow", detail)
        return ScoreTrack(spec, times, tuple(float(v) for v in closest), duration_s)

    def _summary_spec(self, label: str, description: str, on_match: OnMatch, detail: dict[str, object]) -> ScorerSpec:
        config = self._scorer.config
        backbone = self._scorer.backbone
        return ScorerSpec(
            name="likeness",
            label=label,
            version=config.version,
            model_hash=backbone.model_hash,
            threshold=config.match_threshold,
            review_band=config.review_band,
            description=description,
            on_match=on_match,
            development_model=backbone.development_model,
            detail=detail,
        )

    def _spec(self, identity: Identity) -> ScorerSpec:
        config = self._scorer.config
        backbone = self._scorer.backbone
        name = identity.key.split(":", 1)[1]
        detail: dict[str, object] = {"kind": identity.kind, "faces": self.faces_detected}
        if identity.kind == "protected":
            detail["person"] = name
            description, on_match = f"a face matches protected person {name}", "block"
        elif identity.grant_id is not None:
            detail.update(cameo_id=name, grant_id=identity.grant_id)
            description, on_match = f"cameo {name} appears under grant {identity.grant_id}", "allow"
        else:
            detail["cameo_id"] = name
            description, on_match = f"a face matches cameo {name}, for which the creator holds no live grant", "block"
        return ScorerSpec(
            name="likeness",
            label=identity.key,
            version=config.version,
            model_hash=backbone.model_hash,
            threshold=config.match_threshold,
            review_band=config.review_band,
            description=description,
            on_match="allow" if on_match == "allow" else "block",
            development_model=backbone.development_model,
            detail=detail,
        )


def build_protected_people(
    images: Mapping[str, Sequence[Path | np.ndarray]],
    scorer: LikenessScorer,
    out: Path,
) -> Path:
    """Embeds the largest face of each reference image per person and writes the protected people file."""
    from moderation.sampling import load_image

    embeddings: dict[str, np.ndarray] = {}
    for name, sources in images.items():
        rows: list[np.ndarray] = []
        for source in sources:
            image = load_image(Path(source)) if isinstance(source, str | Path) else np.asarray(source)
            faces = scorer.face_embeddings(image)
            if len(faces) == 0:
                raise InvalidInput(f"no face found in a reference image of {name}")
            rows.append(faces[0])
        if not rows:
            raise InvalidInput(f"no reference images given for {name}")
        embeddings[name] = np.stack(rows)
    people = ProtectedPeople(embeddings, backbone_model_hash=scorer.backbone.model_hash)
    return people.save(out)
