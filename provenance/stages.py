"""The real stages behind the gate workers: the generator, the moderation models, C2PA signing.

Each adapter turns a job from `provenance.gates` into a call of its library and the library's result
into the event payload. Heavy libraries are imported when a stage is built, not when this module is.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from kernel.blobstore import BlobStore
from kernel.errors import InvalidInput
from provenance.gates import ModerationJob, RenderJob, SigningJob
from schemas import events as e

log = logging.getLogger(__name__)

T = TypeVar("T")


def decode_image(data: bytes) -> np.ndarray:
    """An encoded image (PNG, JPEG) as an RGB array; a clear error for anything else."""
    import cv2

    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise InvalidInput("the reference is not an image OpenCV can read (PNG or JPEG)")
    return np.ascontiguousarray(image[:, :, ::-1])


def encode_png(image: np.ndarray) -> bytes:
    import cv2

    ok, data = cv2.imencode(".png", np.ascontiguousarray(image[:, :, ::-1]))
    if not ok:
        raise InvalidInput("could not encode the image as PNG")
    return bytes(data)


class GeneratorStage:
    """Renders with the generator's backends into the blob store."""

    def __init__(self, store: BlobStore, weights_dir: Path | None = None) -> None:
        from generator.pipeline import clean_stale_renders

        self.store = store
        self.weights_dir = weights_dir
        self._backends: dict[str, Any] = {}
        for path in clean_stale_renders(store.root):
            log.info("removed %s, a render a stopped worker left half-written", path.name)

    def render(self, job: RenderJob) -> e.VideoRendered:
        from generator import RenderSpec, make_backend, render_to_blob

        params = job.parameters
        name = params.backend
        if name not in self._backends:
            self._backends[name] = make_backend(name, weights_dir=self.weights_dir)
        spec = RenderSpec(
            prompt=job.prompt,
            seed=job.seed,
            duration_s=params.duration_s,
            fps=params.fps,
            width=params.width,
            height=params.height,
            cameos={cameo_id: decode_image(data) for cameo_id, data in job.cameo_images.items()},
            backend=name,
        )
        return render_to_blob(spec, self.store, self._backends[name]).to_payload()


class CredentialsStage:
    """Watermarks and signs with C2PA; the signed file and its manifest store go into the blob store."""

    TSA_DELAYS_S: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0)
    """Back-off between tries when the time-stamp authority does not answer (then signing fails, saying so, and
    the video waits at its gate: an authority that is down is no verdict on it)."""

    def __init__(
        self,
        store: BlobStore,
        identity_dir: Path,
        scratch: Path,
        tsa_url: str | None = None,
        distrust_file: Path | None = None,
    ) -> None:
        from provenance.credentials.errors import PkiError
        from provenance.credentials.pki import SigningIdentity
        from provenance.credentials.trust import load_distrusted

        self.store = store
        self.identity = SigningIdentity.from_directory(identity_dir, tsa_url=tsa_url)
        try:
            self.identity.check()  # a signer without an identity refuses to start instead of blocking every video
        except PkiError as exc:
            raise PkiError(
                f"no usable signing identity in {identity_dir} ({exc}): run `provenance pki init` for a development "
                "one, or set PROVENANCE_SIGNING_DIR"
            ) from exc
        fingerprint = self.identity.certificate_fingerprint()
        distrusted = load_distrusted(distrust_file) if distrust_file is not None else []
        if any(entry.fingerprint == fingerprint for entry in distrusted):  # what it signed would be Invalid at once
            raise PkiError(
                f"the signing certificate in {identity_dir} is distrusted: run `provenance pki rotate` for a new one"
            )
        self.scratch = scratch

    def sign(self, job: SigningJob) -> e.VideoSigned:
        from uuid import UUID

        from provenance.credentials.manifest import CameoUse, ClassifierRecord, ManifestInputs
        from provenance.credentials.signing import sign_video

        moderation = job.moderation
        inputs = ManifestInputs(
            video_id=UUID(job.video_id),
            generator_name=job.generator.name,
            generator_version=job.generator.version,
            generator_model_sha256=job.generator.model_hash,
            event_ids=tuple(job.event_ids),
            moderation_verdict=moderation.verdict,
            classifiers=tuple(ClassifierRecord(c.name, c.version, c.model_hash) for c in moderation.classifiers),
            cameos=tuple(CameoUse(c.cameo_id, c.grant_id) for c in job.cameos),
            development_model=moderation.development_model,
            remix_of=UUID(job.remix_of) if job.remix_of else None,
        )
        self.scratch.mkdir(parents=True, exist_ok=True)
        output = self.scratch / f"{job.video_id}.signed.mp4"
        try:
            signed = self._time_stamped(
                lambda: sign_video(
                    job.video_path, output, inputs, self.identity, job.parent_signed_path, blob_store=self.store
                )
            )
        finally:
            output.unlink(missing_ok=True)  # the signed file now lives in the blob store
        return signed.to_payload()

    def _time_stamped(self, sign: Callable[[], T]) -> T:
        """Sign; when the time-stamp authority fails, try again with back-off, and never sign without it."""
        import time

        from provenance.credentials.errors import SigningError, TimeStampUnavailable

        url = self.identity.tsa_url
        for delay in (*self.TSA_DELAYS_S, None):
            try:
                return sign()
            except SigningError as exc:
                if url is None or not _mentions_tsa(str(exc), url):
                    raise
                if delay is None:
                    tries = len(self.TSA_DELAYS_S) + 1
                    raise TimeStampUnavailable(
                        f"the time-stamp authority {url} did not answer in {tries} tries, or refused, and a signature "
                        f"is not made without its time-stamp: {exc}"
                    ) from exc
                log.warning("time-stamp authority %s failed (%s); trying again in %.1f s", url, exc, delay)
                time.sleep(delay)
        raise AssertionError("unreachable")


def _mentions_tsa(message: str, url: str) -> bool:
    """Whether a signing error is the time-stamp authority's: its address, or the library's words for the one
    remote service signing calls (c2pa reports an HTTP error of the TSA as "service responded with ...", and a
    reply it cannot read, such as an RFC 3161 rejection, as a failure of the "Signature" step, which the identity
    checked at start cannot otherwise fail)."""
    from urllib.parse import urlparse

    text = message.lower()
    words = (
        "timestamp",
        "time stamp",
        "time-stamp",
        "service responded",
        "connection refused",
        "timed out",
        "signature:",
    )
    return urlparse(url).netloc.lower() in text or any(word in text for word in words)


class ModelModerationStage:
    """The CLIP policy and likeness classifiers, loaded once per process, and the index of every cameo."""

    def __init__(self, config: Any, cameo_index: Any = None) -> None:
        from moderation.moderator import load_moderator

        self.config = config
        self.moderator = load_moderator(config)
        self.cameo_index = cameo_index
        """A `provenance.likeness_index.CameoIndex`: every other registered likeness, compared per face."""

    def moderate(self, job: ModerationJob) -> e.ModerationDecided:
        from moderation.config import ModerationContext
        from moderation.likeness import CameoReference
        from provenance.likeness_index import grants_for

        cameos = {cid: CameoReference.from_image(decode_image(data)) for cid, data in job.known_cameos.items()}
        index = None
        if self.cameo_index is not None:
            index = self.cameo_index.current(self.moderator.likeness)
            index.grant_for = grants_for(job.creator_id, job.granted_cameos)
        context = ModerationContext(config=self.config, cameos=cameos, grants=job.granted_cameos, index=index)
        return self.moderator.moderate_video(job.video_path, context).to_payload()


class ModelLikenessMatcher:
    """The moderation gate's own likeness model and match threshold, for registration's impersonation check."""

    def __init__(self, config: Any) -> None:
        from moderation.moderator import load_moderator

        self.scorer = load_moderator(config).likeness
        self.threshold = self.scorer.config.match_threshold
