"""Each cameo's likeness embedding, computed once and kept encrypted under the cameo's own key, and the
moderation worker's index over all of them.

A moderation job used to decrypt, decode and embed the reference image of every live cameo on the
platform. Now a cameo's embedding is computed the first time a worker meets it (or when it registers), sealed
with the cameo's key (AES-GCM, bound to the cameo and the model) in the keys database, and kept decrypted only
in the worker's in-memory index; each job adds the cameos registered since the last one and drops the erased
ones. Erasure destroys the key, so a stored embedding is unreadable like the reference image it came from.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import sqlalchemy as sa

from kernel.errors import InfrastructureFailure, ProvenanceError

if TYPE_CHECKING:
    from moderation.likeness_index import LikenessIndex
    from provenance.application import ProvenanceApp
    from provenance.keystore import LikenessKeys

log = logging.getLogger(__name__)

_metadata = sa.MetaData()
sealed = sa.Table(
    "cameo_embeddings",
    _metadata,
    sa.Column("cameo_id", sa.String(64), primary_key=True),
    sa.Column("model_hash", sa.String(128), primary_key=True),
    sa.Column("ciphertext", sa.LargeBinary, nullable=False),
)


class SealedEmbeddings:
    """Embeddings encrypted under their cameo's key, one per (cameo, model)."""

    def __init__(self, url: str, keys: LikenessKeys) -> None:

        self.url = url
        self.engine = sa.create_engine(url)
        self.keys = keys
        self._ready = False

    def _table(self, *, create: bool) -> bool:
        """Whether the table is there, made when `create` (a store, once its key was found): reading never makes
        the keys database, so a lost one is not replaced by an empty one."""
        from provenance.kafka.positions import creating_tables
        from provenance.keystore import sqlite_file

        if not self._ready:
            if not create:
                database = sqlite_file(self.url)
                if database is not None and not os.path.exists(database):
                    return False
                if not sa.inspect(self.engine).has_table(sealed.name):
                    return False
            creating_tables(lambda: _metadata.create_all(self.engine))
            self._ready = True
        return True

    @staticmethod
    def _context(cameo_id: str, model_hash: str) -> bytes:
        return f"likeness-embedding:{cameo_id}:{model_hash}".encode()

    def store(self, cameo_id: str, key_id: str, model_hash: str, embedding: np.ndarray) -> None:
        data = np.asarray(embedding, dtype="<f4").tobytes()
        ciphertext = self.keys.encrypt(key_id, data, self._context(cameo_id, model_hash))
        self._table(create=True)
        with self.engine.begin() as conn:
            conn.execute(sa.delete(sealed).where(sealed.c.cameo_id == cameo_id, sealed.c.model_hash == model_hash))
            conn.execute(sa.insert(sealed).values(cameo_id=cameo_id, model_hash=model_hash, ciphertext=ciphertext))

    def load(self, cameo_id: str, key_id: str, model_hash: str) -> np.ndarray | None:
        """The embedding, or None when none was stored or the key is destroyed (the cameo was erased)."""
        if not self._table(create=False):
            return None
        with self.engine.connect() as conn:
            ciphertext = conn.execute(
                sa.select(sealed.c.ciphertext).where(sealed.c.cameo_id == cameo_id, sealed.c.model_hash == model_hash)
            ).scalar()
        if ciphertext is None:
            return None
        try:
            data = self.keys.decrypt(key_id, ciphertext, self._context(cameo_id, model_hash))
        except InfrastructureFailure:
            raise  # a key store that does not hold the key (lost, or the wrong one): not an erasure
        except ProvenanceError:
            return None
        return np.frombuffer(data, dtype="<f4").copy()

    def forget(self, cameo_id: str) -> None:
        if not self._table(create=False):
            return
        with self.engine.begin() as conn:
            conn.execute(sa.delete(sealed).where(sealed.c.cameo_id == cameo_id))

    def close(self) -> None:
        self.engine.dispose()


class CameoIndex:
    """Keeps a `LikenessIndex` in step with the platform's live, active cameos."""

    def __init__(
        self,
        app: ProvenanceApp,
        live_cameo_ids: Callable[[], list[str]],
        sealed_embeddings: SealedEmbeddings,
    ) -> None:
        self.app = app
        self.live_cameo_ids = live_cameo_ids
        self.sealed = sealed_embeddings
        self.index: LikenessIndex | None = None

    def current(self, scorer: Any) -> LikenessIndex:
        """The index for `scorer`'s model, with the cameos registered since the last call added and the
        erased ones dropped; a cameo met for the first time is embedded once and sealed. A held or rejected
        cameo stays in it but is never a match (`usable` asks its state when it comes near)."""
        from moderation.likeness_index import LikenessIndex

        model_hash = scorer.backbone.model_hash
        if self.index is None or self.index.model_hash != model_hash:
            self.index = LikenessIndex(scorer.backbone.embed_dim, model_hash)
            self.index.usable = lambda cameo_id: self.app.cameo(cameo_id).is_active
        index = self.index
        live, indexed = set(self.live_cameo_ids()), index.cameo_ids()
        added: dict[str, tuple[str, np.ndarray]] = {}
        for cameo_id in sorted(live - indexed):
            found = self._embedding(cameo_id, scorer)
            if found is not None:
                added[cameo_id] = found
        index.update(added, indexed - live)
        return index

    def _embedding(self, cameo_id: str, scorer: Any) -> tuple[str, np.ndarray] | None:
        from moderation.likeness import CameoReference
        from provenance.stages import decode_image

        cameo = self.app.cameo(cameo_id)
        model_hash = scorer.backbone.model_hash
        embedding = self.sealed.load(cameo_id, cameo.key_id, model_hash)
        if embedding is None:
            try:
                image = self.app.cameo_reference(cameo_id)
            except InfrastructureFailure:
                raise  # a lost key store: leaving the cameo out would let its likeness through unchecked
            except ProvenanceError:
                return None  # erased since it was listed
            reference = CameoReference.from_image(decode_image(image))
            embedding = scorer.reference_embeddings(cameo_id, reference)[0]
            self.sealed.store(cameo_id, cameo.key_id, model_hash, embedding)
        return cameo.owner_id, embedding


def grants_for(creator_id: str, granted: Mapping[str, str]) -> Callable[[str, str], str | None]:
    """Which grant a matched cameo appears under: the video's own grants, or the creator's own likeness."""
    from provenance.domain.consent import OWNER_GRANT

    def grant_for(cameo_id: str, owner_id: str) -> str | None:
        if cameo_id in granted:
            return granted[cameo_id]
        return OWNER_GRANT if owner_id == creator_id else None

    return grant_for
