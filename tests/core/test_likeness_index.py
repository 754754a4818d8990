"""The moderation gate's cameo index: each likeness embedded once, sealed under its cameo's key, and a held
or erased cameo never compared."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from devkit.clip import synthesize_face
from provenance.bootstrap import System
from provenance.config import Settings
from provenance.stages import encode_png


@pytest.fixture
def system(tmp_path: Path) -> Any:
    built = System(Settings(home=tmp_path / "home", event_store="sqlite"))
    yield built
    built.close()


def test_each_likeness_is_embedded_once_sealed_and_dropped_when_erased(system: System) -> None:
    app = system.app
    people = [app.register_person(f"p{n}") for n in range(4)]
    cameos = [app.register_cameo(person, encode_png(synthesize_face(n, 256))) for n, person in enumerate(people)]
    system.catch_up()
    stage = system.gate_workers(moderate=True).moderation_stage
    scorer = stage.moderator.likeness  # type: ignore[union-attr]

    decrypted: list[str] = []
    original = app.cameo_reference

    def counting(cameo_id: Any) -> bytes:
        decrypted.append(str(cameo_id))
        return original(cameo_id)

    app.cameo_reference = counting  # type: ignore[method-assign]
    index = system.cameo_index.current(scorer)
    assert index.cameo_ids() == {str(c) for c in cameos} and len(decrypted) == 4
    assert system.cameo_index.current(scorer) is index and len(decrypted) == 4  # nothing new: nothing decoded

    # A fresh worker (a restart) reads the sealed embeddings instead of decoding the images again.
    restarted = System(system.settings)
    restarted.app.cameo_reference = counting  # type: ignore[method-assign]
    assert restarted.cameo_index.current(scorer).cameo_ids() == index.cameo_ids() and len(decrypted) == 4
    restarted.close()

    # The stored embedding is ciphertext under the cameo's key; erasing the cameo leaves it unreadable.
    cameo = app.cameo(cameos[0])
    sealed = system.cameo_index.sealed
    assert sealed.load(str(cameos[0]), cameo.key_id, scorer.backbone.model_hash) is not None
    app.erase_cameo(people[0], cameos[0], "gone")
    system.catch_up()
    assert sealed.load(str(cameos[0]), cameo.key_id, scorer.backbone.model_hash) is None
    assert str(cameos[0]) not in system.cameo_index.current(scorer).cameo_ids()


def test_a_lost_key_store_stops_the_index_instead_of_leaving_likenesses_out(system: System) -> None:
    from provenance.keystore import KeyMissing

    app = system.app
    person = app.register_person("p0")
    cameo = app.register_cameo(person, encode_png(synthesize_face(0, 256)))
    system.catch_up()
    stage = system.gate_workers(moderate=True).moderation_stage
    scorer = stage.moderator.likeness  # type: ignore[union-attr]
    assert system.cameo_index.current(scorer).cameo_ids() == {str(cameo)}
    keys = system.settings.home / "keys.db"
    keys.rename(keys.with_name("keys.db.away"))  # lost, or PROVENANCE_KEYS_URL forgotten, at a restart
    restarted = System(system.settings)
    with pytest.raises(KeyMissing, match="does not hold key"):
        restarted.cameo_index.current(scorer)
    restarted.close()
    assert not keys.exists()  # no empty key store made in its place


def test_a_cameo_registered_against_a_lost_key_store_is_refused_so_no_key_is_lost_when_it_comes_back(
    system: System,
) -> None:
    """A new key made in an empty key store would be lost when the right one is restored: refused, nothing
    recorded; a fresh platform's first cameo, and one registered against the restored store, go through."""
    from provenance.keystore import KeyMissing

    app = system.app
    person = app.register_person("p0")
    first = app.register_cameo(person, encode_png(synthesize_face(0, 256)))  # a fresh store's first key
    keys = system.settings.home / "keys.db"
    keys.rename(keys.with_name("keys.db.away"))
    restarted = System(system.settings)
    before = restarted.app.recorder.max_notification_id()
    with pytest.raises(KeyMissing, match="holds none of the keys"):
        restarted.app.register_cameo(person, encode_png(synthesize_face(1, 256)))
    assert restarted.app.recorder.max_notification_id() == before
    restarted.close()
    keys.with_name("keys.db.away").rename(keys)  # restored
    restored = System(system.settings)
    second = restored.app.register_cameo(person, encode_png(synthesize_face(1, 256)))
    assert restored.app.cameo(second).key_id and restored.app.cameo(first).key_id
    restored.close()
    with sqlite3.connect(keys) as store:  # every key gone, as erasures left it before they left tombstones
        store.execute("DELETE FROM likeness_keys")
        store.execute("DROP TABLE destroyed_keys")
    erased = System(system.settings)
    assert erased.app.register_cameo(person, encode_png(synthesize_face(2, 256)))  # still the right store
    erased.close()


def test_a_cameo_held_as_an_impersonation_is_left_out_until_cleared(system: System) -> None:
    app = system.app
    alice, mallory, tess = (app.register_person(h) for h in ("alice", "mallory", "tess"))
    from provenance.application.service import OPERATOR

    app.change_role(OPERATOR, tess, "trust_and_safety", grant=True)
    face = encode_png(synthesize_face(0, 256))
    real = app.register_cameo(alice, face)
    stolen = app.register_cameo(mallory, face)
    assert system.verify_cameo(stolen) is not None
    stage = system.gate_workers(moderate=True).moderation_stage
    scorer = stage.moderator.likeness  # type: ignore[union-attr]
    index = system.cameo_index.current(scorer)
    assert not index.usable(str(stolen)) and index.usable(str(real))
    assert index.closest(str(real)) is None  # the held copy is never a match for anyone
    app.review_cameo(stolen, tess, "cleared", "the same person, two accounts")
    assert index.usable(str(stolen)) and index.closest(str(real)) == (str(stolen), pytest.approx(1.0, abs=1e-3))
