from __future__ import annotations

from pathlib import Path

import pytest

from kernel.blobstore import BlobStore
from kernel.errors import InvalidInput, NotFound
from provenance.credentials.pki import DevelopmentPki
from provenance.credentials.resolution import InMemoryManifestIndex, ManifestRecord, ManifestResolver
from provenance.credentials.verify import read_manifest_store_json
from provenance.credentials.watermark import ALG
from tests.credentials.conftest import Signed
from tests.credentials.support import FakeStatusLookup, blank_manifest_box, reencode


@pytest.fixture()
def resolver(tmp_path: Path, signed: Signed, remix: Signed, pki: DevelopmentPki) -> ManifestResolver:
    blobs = BlobStore(tmp_path / "blobs")
    index = InMemoryManifestIndex()
    for item in (signed, remix):
        blobs.put_bytes(item.result.manifest_store)
        index.add(ManifestRecord.from_payload(item.result.to_payload().model_dump(mode="json")))
    return ManifestResolver(index, blobs, pki.trust())


def test_lookup_by_binding(resolver: ManifestResolver, signed: Signed) -> None:
    alg, value = signed.result.soft_binding
    response = resolver.matches_by_binding(alg, value)
    assert response.to_json() == {"matches": [{"manifestId": signed.result.manifest_id}]}
    assert resolver.matches_by_binding(alg, "AAAAAAAAAAA=").matches == ()
    with pytest.raises(InvalidInput):
        resolver.matches_by_binding(ALG, "not-a-payload")


def test_lookup_by_content_exact_copy_and_stripped_copy(
    resolver: ManifestResolver, signed: Signed, tmp_path: Path
) -> None:
    exact = resolver.matches_by_content(signed.path)
    assert [(m.manifest_id, m.matched_by) for m in exact.matches] == [(signed.result.manifest_id, "sha256")]
    stripped = reencode(signed.path, tmp_path / "uploaded.mp4", crf=23)
    recovered = resolver.matches_by_content(stripped)
    assert [(m.manifest_id, m.matched_by) for m in recovered.matches] == [(signed.result.manifest_id, "watermark")]
    assert recovered.soft_binding == {"alg": ALG, "value": signed.result.soft_binding[1]}


def test_unknown_content_matches_nothing(resolver: ManifestResolver, clip: Path, tmp_path: Path) -> None:
    assert resolver.matches_by_content(clip).matches == ()
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    assert resolver.matches_by_content(text).matches == ()
    with pytest.raises(InvalidInput, match="no such file"):
        resolver.matches_by_content(tmp_path / "missing.mp4")
    with pytest.raises(InvalidInput, match="not a file"):
        resolver.matches_by_content(tmp_path)


def test_fetch_manifest_store_by_id(resolver: ManifestResolver, remix: Signed, signed: Signed) -> None:
    store = resolver.manifest(remix.result.manifest_id)
    assert store == remix.result.manifest_store
    parsed = read_manifest_store_json(store, resolver.trust)
    assert parsed["active_manifest"] == remix.result.manifest_id
    assert signed.result.manifest_id in parsed["manifests"]  # the parent travels with the remix
    with pytest.raises(NotFound):
        resolver.manifest("urn:c2pa:00000000-0000-0000-0000-000000000000")


def test_stored_manifest_reattaches_to_a_file_whose_manifest_was_blanked(
    resolver: ManifestResolver, signed: Signed, tmp_path: Path
) -> None:
    blanked = tmp_path / "blanked.mp4"
    blanked.write_bytes(blank_manifest_box(signed.path.read_bytes()))
    lookup = FakeStatusLookup()
    assert resolver.matches_by_content(blanked).matches[0].manifest_id == signed.result.manifest_id
    report = resolver.verify_with_stored_manifest(blanked, signed.result.manifest_id, lookup)
    assert report.state == "Trusted"
    assert report.video_id == str(signed.video_id)


def test_stored_manifest_does_not_vouch_for_reencoded_bytes(
    resolver: ManifestResolver, signed: Signed, tmp_path: Path
) -> None:
    reencoded = reencode(signed.path, tmp_path / "uploaded.mp4", crf=18)
    report = resolver.verify_with_stored_manifest(reencoded, signed.result.manifest_id)
    assert report.state == "Invalid"
    assert any(code.startswith("assertion.bmffHash") for code in report.failures)


def test_lookup_by_content_of_a_clip_spliced_from_two_videos_matches_both_and_says_so(
    resolver: ManifestResolver, signed: Signed, remix: Signed, tmp_path: Path
) -> None:
    from tests.credentials.support import splice

    spliced = splice(tmp_path / "spliced.mp4", (signed.path, 12), (remix.path, None))
    found = resolver.matches_by_content(spliced)
    assert [(m.manifest_id, m.matched_by) for m in found.matches] == [
        (signed.result.manifest_id, "watermark"),
        (remix.result.manifest_id, "watermark"),
    ]
    assert found.conflict is not None
    assert signed.result.manifest_id in found.conflict and remix.result.manifest_id in found.conflict
    assert found.to_json()["conflict"] == found.conflict
    assert "conflict" not in resolver.matches_by_content(signed.path).to_json()  # one video: the API's body as before


def test_a_damaged_stored_manifest_is_refused_and_storing_its_content_again_repairs_it(
    resolver: ManifestResolver, signed: Signed
) -> None:
    import hashlib

    from kernel.blobstore import BlobDamaged

    good = signed.result.manifest_store
    path = resolver.blobs.path(hashlib.sha256(good).hexdigest())
    path.write_bytes(good[:-1] + bytes([good[-1] ^ 1]))  # one bit flipped on the disk
    with pytest.raises(BlobDamaged, match="restore it from a backup"):
        resolver.manifest(signed.result.manifest_id)
    resolver.blobs.put_bytes(good)
    assert resolver.manifest(signed.result.manifest_id) == good
