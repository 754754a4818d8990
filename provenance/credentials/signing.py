"""The gate from `moderated` to `signed`: watermark the video, then sign a C2PA manifest into it.

`sign_video` works in a scratch directory beside the output and renames the signed file into place only
when everything succeeded, so a failure (expired certificate, unreachable TSA, a signing callback that
refuses) raises `SigningError` and leaves nothing that looks signed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kernel.blobstore import BlobStore, sha256_file
from provenance.credentials.c2pa_context import reading_context, signing_context
from provenance.credentials.errors import CredentialsError, SigningError
from provenance.credentials.manifest import (
    PARENT_INGREDIENT_LABEL,
    THUMBNAIL_ID,
    ManifestInputs,
    manifest_definition,
    poster_frame_jpeg,
)
from provenance.credentials.pki import SigningIdentity
from provenance.credentials.watermark import (
    ALG,
    DEFAULT_CONFIG,
    WatermarkConfig,
    WatermarkReport,
    embed_watermark,
    payload_for,
    soft_binding_value,
)
from schemas.events import SoftBinding, VideoSigned

if TYPE_CHECKING:
    import c2pa

WATERMARK_AGENT = {"name": "provenance-watermark", "version": ALG.rsplit(".", 1)[-1]}


@dataclass(frozen=True, slots=True)
class SignedVideo:
    """A signed file and the facts the `VideoSigned` event records about it."""

    path: Path
    manifest_id: str
    manifest_store: bytes = field(repr=False)
    """The C2PA manifest store (JUMBF) as embedded; kept in the blob store for re-attachment."""
    manifest_sha256: str
    signed_sha256: str
    signed_uri: str
    """`blob:sha256:...` when `sign_video` was given a blob store, else empty for the caller to fill."""
    certificate_fingerprint: str
    signer: str
    soft_binding: tuple[str, str]
    development_pki: bool
    watermark: WatermarkReport | None
    """What embedding the watermark cost (None when the frames were marked before signing)."""
    manifest_store_uri: str = ""

    def to_payload(self) -> VideoSigned:
        """The `VideoSigned` event payload (the URIs are empty when no blob store was given)."""
        alg, value = self.soft_binding
        return VideoSigned(
            manifest_id=self.manifest_id,
            manifest_sha256=self.manifest_sha256,
            manifest_uri=self.manifest_store_uri,
            signed_sha256=self.signed_sha256,
            signed_uri=self.signed_uri,
            certificate_fingerprint=self.certificate_fingerprint,
            signer=self.signer,
            soft_binding=SoftBinding(alg=alg, value=value),
            development_pki=self.development_pki,
        )

    def with_uri(self, signed_uri: str) -> SignedVideo:
        return dataclasses.replace(self, signed_uri=signed_uri)


def sign_video(
    input: Path,
    output: Path,
    manifest: ManifestInputs,
    identity: SigningIdentity,
    parent_signed_file: Path | None = None,
    *,
    blob_store: BlobStore | None = None,
    watermark: WatermarkConfig = DEFAULT_CONFIG,
) -> SignedVideo:
    """Watermark `input`, sign it with `identity` and write the signed MP4 to `output`.

    A remix passes its parent's signed file: it becomes the manifest's one `parentOf` ingredient, so the
    parent's manifest (and its own ancestors) travel inside the remix. With `blob_store`, the signed file
    and the manifest store are stored there and `signed_uri` is filled in.
    """
    input, output = Path(input), Path(output)
    _check_can_sign(input, parent_signed_file, identity)
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{output.stem}-signing-", dir=output.parent) as scratch:
        marked = Path(scratch) / "marked.mp4"
        try:
            report = embed_watermark(input, marked, payload_for(manifest.video_id), watermark)
        except CredentialsError as exc:
            raise SigningError(f"cannot sign {input.name}: {exc}") from exc
        signed = _sign_prepared(marked, output, manifest, identity, parent_signed_file, blob_store, input.name)
    return dataclasses.replace(signed, watermark=report)


def sign_watermarked_video(
    marked: Path,
    output: Path,
    manifest: ManifestInputs,
    identity: SigningIdentity,
    parent_signed_file: Path | None = None,
    *,
    blob_store: BlobStore | None = None,
) -> SignedVideo:
    """The C2PA step alone, for a file whose frames already carry the watermark of `manifest.video_id`.

    `sign_video` calls it after embedding; it is public for pipelines that mark frames while rendering.
    """
    marked, output = Path(marked), Path(output)
    _check_can_sign(marked, parent_signed_file, identity)
    output.parent.mkdir(parents=True, exist_ok=True)
    return _sign_prepared(marked, output, manifest, identity, parent_signed_file, blob_store, marked.name)


def _check_can_sign(source: Path, parent_signed_file: Path | None, identity: SigningIdentity) -> None:
    if not source.is_file():
        raise SigningError(f"cannot sign {source}: no such file")
    if parent_signed_file is not None and not Path(parent_signed_file).is_file():
        raise SigningError(f"cannot sign a remix of {parent_signed_file}: the parent's signed file is missing")
    try:
        identity.check()
    except CredentialsError as exc:
        raise SigningError(f"cannot sign {source.name}: {exc}") from exc


def _sign_prepared(
    marked: Path,
    output: Path,
    manifest: ManifestInputs,
    identity: SigningIdentity,
    parent_signed_file: Path | None,
    blob_store: BlobStore | None,
    shown_name: str,
) -> SignedVideo:
    soft_binding = (ALG, soft_binding_value(payload_for(manifest.video_id)))
    thumbnail = poster_frame_jpeg(marked)
    definition = manifest_definition(
        manifest,
        soft_binding,
        watermark_agent=WATERMARK_AGENT,
        is_remix=parent_signed_file is not None,
        has_thumbnail=True,
    )
    descriptor, name = tempfile.mkstemp(prefix=f".{output.stem}-", suffix=".signing.mp4", dir=output.parent)
    os.close(descriptor)
    signed = Path(name)
    try:
        store = _sign_with_c2pa(definition, thumbnail, marked, signed, identity, parent_signed_file, shown_name)
        manifest_id = _active_manifest_id(store, identity)
        os.replace(signed, output)
    finally:
        signed.unlink(missing_ok=True)
    signed_uri = manifest_store_uri = ""
    if blob_store is not None:
        signed_ref = blob_store.put_file(output)
        signed_sha256, signed_uri = signed_ref.sha256, signed_ref.uri
        manifest_store_uri = blob_store.put_bytes(store).uri
    else:
        signed_sha256 = sha256_file(output)
    return SignedVideo(
        path=output,
        manifest_id=manifest_id,
        manifest_store=store,
        manifest_sha256=hashlib.sha256(store).hexdigest(),
        signed_sha256=signed_sha256,
        signed_uri=signed_uri,
        certificate_fingerprint=identity.certificate_fingerprint(),
        signer=identity.signer_name(),
        soft_binding=soft_binding,
        development_pki=identity.is_development(),
        watermark=None,
        manifest_store_uri=manifest_store_uri,
    )


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _make_signer(identity: SigningIdentity) -> c2pa.Signer:
    import c2pa

    chain = identity.chain_pem()
    if identity.sign_callback is not None:
        return c2pa.Signer.from_callback(identity.sign_callback, c2pa.C2paSigningAlg.ES256, chain, identity.tsa_url)
    info = c2pa.C2paSignerInfo(
        c2pa.C2paSigningAlg.ES256,
        chain.encode("ascii"),
        identity.key_pem().encode("ascii"),
        identity.tsa_url.encode("ascii") if identity.tsa_url else None,
    )
    return c2pa.Signer.from_info(info)


def _sign_with_c2pa(
    definition: dict[str, Any],
    thumbnail: bytes,
    source: Path,
    destination: Path,
    identity: SigningIdentity,
    parent_signed_file: Path | None,
    shown_name: str,
) -> bytes:
    import c2pa

    try:
        with signing_context(identity) as context, _make_signer(identity) as signer:
            builder = c2pa.Builder(definition, context)
            try:
                builder.add_resource(THUMBNAIL_ID, io.BytesIO(thumbnail))
                if parent_signed_file is not None:
                    with open(parent_signed_file, "rb") as parent:
                        builder.add_ingredient(
                            {
                                "title": Path(parent_signed_file).name,
                                "relationship": "parentOf",
                                "label": PARENT_INGREDIENT_LABEL,
                            },
                            "video/mp4",
                            parent,
                        )
                with open(source, "rb") as src, open(destination, "w+b") as dst:
                    store = builder.sign(signer, "video/mp4", src, dst)
            finally:
                builder.close()
    except c2pa.C2paError as exc:
        destination.unlink(missing_ok=True)
        raise SigningError(f"C2PA signing of {shown_name} failed: {_one_line(exc)}") from exc
    if not store:
        destination.unlink(missing_ok=True)
        raise SigningError(f"C2PA signing of {shown_name} returned no manifest store")
    return bytes(store)


def _active_manifest_id(store: bytes, identity: SigningIdentity) -> str:
    """The label of the claim just made, read from the store itself (verify_after_sign already
    validated the signed file, so the file is not hashed a second time)."""
    import c2pa

    try:
        with reading_context(identity.trust) as context:
            reader = c2pa.Reader("application/c2pa", io.BytesIO(store), context=context)
            try:
                manifest = reader.get_active_manifest()
            finally:
                reader.close()
    except c2pa.C2paError as exc:
        raise SigningError(f"the new manifest store could not be read back: {_one_line(exc)}") from exc
    label = (manifest or {}).get("label")
    if not label:
        raise SigningError("the new manifest store has no active manifest")
    return str(label)
