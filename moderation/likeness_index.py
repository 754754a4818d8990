"""Every registered likeness as one matrix: a face is compared with all of them in one product.

A moderation job no longer decodes and embeds the reference image of every cameo on the platform; the
worker keeps this index (embeddings computed once per cameo, see `provenance.likeness_index`) and the
likeness observer asks it, per batch of faces, which cameos come near. Only those become identities with a
track of their own; the record still shows how many were compared and the closest one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np


class LikenessIndex:
    def __init__(self, dim: int, model_hash: str) -> None:
        self.dim = dim
        self.model_hash = model_hash
        self._keys: list[str] = []
        self._owners: list[str] = []
        self._matrix = np.zeros((0, dim), dtype=np.float32)
        self._position: dict[str, int] = {}
        self.grant_for: Callable[[str, str], str | None] = lambda _key, _owner: None
        """The grant under which a matched cameo may appear in the video being moderated (None: none)."""
        self.usable: Callable[[str], bool] = lambda _key: True
        """Whether a cameo may be compared with now (not held or rejected); asked only of cameos that match."""

    def __len__(self) -> int:
        return len(self._keys)

    def cameo_ids(self) -> set[str]:
        return set(self._position)

    def update(self, added: Mapping[str, tuple[str, np.ndarray]], removed: set[str]) -> None:
        """Add cameos (key -> (owner, unit embedding)) and drop others, in one rebuild of the matrix."""
        if not added and not removed:
            return
        keep = [i for i, key in enumerate(self._keys) if key not in removed and key not in added]
        keys = [self._keys[i] for i in keep] + list(added)
        owners = [self._owners[i] for i in keep] + [owner for owner, _ in added.values()]
        rows = [self._matrix[keep]]
        if added:
            fresh = np.stack([np.asarray(e, dtype=np.float32).reshape(self.dim) for _, e in added.values()])
            rows.append(fresh / np.maximum(np.linalg.norm(fresh, axis=1, keepdims=True), 1e-12))
        self._matrix = np.ascontiguousarray(np.concatenate(rows, axis=0))
        self._keys, self._owners = keys, owners
        self._position = {key: i for i, key in enumerate(keys)}

    def closest(self, cameo_id: str) -> tuple[str, float] | None:
        """The indexed cameo of another owner most like `cameo_id` (itself indexed), with its similarity."""
        at = self._position.get(cameo_id)
        if at is None:
            return None
        others = [i for i, owner in enumerate(self._owners) if owner != self._owners[at]]
        similarity = self._matrix[others] @ self._matrix[at] if others else np.zeros(0)
        for best in np.argsort(-similarity):
            if self.usable(self._keys[others[best]]):
                return self._keys[others[best]], float(similarity[best])
        return None

    def search(self, faces: np.ndarray, floor: float) -> tuple[list[tuple[str, str, np.ndarray]], np.ndarray]:
        """Cameos some face comes within `floor` of (key, owner, embedding), and each face's closest similarity."""
        if not len(self._keys) or not len(faces):
            return [], np.full(len(faces), np.nan)
        similarity = faces.astype(np.float32) @ self._matrix.T  # (faces, cameos): one product for all
        closest = similarity.max(axis=1)
        near = [i for i in np.flatnonzero((similarity >= floor).any(axis=0)) if self.usable(self._keys[i])]
        hits = [(self._keys[i], self._owners[i], self._matrix[i : i + 1]) for i in near]
        return hits, closest
