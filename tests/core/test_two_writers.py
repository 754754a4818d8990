"""Two processes writing to one event store: a command in one never decides from a copy the other has outdated.

The aggregate a command changes is taken from the process's cache as it is; these tests hold the guarantees
that make that safe: a save from an outdated copy conflicts and runs again on a fresh one, and a command that
refuses or has nothing to do checks its copy before it answers.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from kernel.errors import RuleViolation
from provenance.application import ProvenanceApp
from provenance.bootstrap import System
from provenance.config import Settings
from tests.core.support import moderation, rendered, signature


@pytest.fixture
def writers(tmp_path: Path) -> Iterator[tuple[ProvenanceApp, ProvenanceApp]]:
    first = System(Settings(home=tmp_path / "home", event_store="sqlite"))
    second = System(Settings(home=tmp_path / "home", event_store="sqlite"))
    yield first.app, second.app
    first.close()
    second.close()


def test_a_command_refused_by_an_outdated_copy_runs_again_on_a_fresh_one(
    writers: tuple[ProvenanceApp, ProvenanceApp],
) -> None:
    here, there = writers
    creator = here.register_person("carol")
    video = here.request_generation(creator, "a clip", command_id="req")
    here.record_render(video, rendered(), command_id="render")  # `here` caches the video as rendered
    there.record_moderation(video, moderation(), command_id="moderate")
    # Signing needs a moderated video: the cached copy says rendered, the store says moderated.
    assert here.record_signature(video, signature(video), command_id="sign")
    assert here.video(video).state == "signed" and there.video(video).state == "signed"


def test_a_save_from_an_outdated_copy_conflicts_and_runs_again(writers: tuple[ProvenanceApp, ProvenanceApp]) -> None:
    here, there = writers
    creator = here.register_person("dan")
    video = here.request_generation(creator, "a clip", command_id="req")
    here.record_render(video, rendered(), command_id="render")
    there.record_moderation(video, moderation(), command_id="moderate")
    # The same decision again from the outdated copy: recorded once, as the fresh copy knows it is done.
    assert not here.record_moderation(video, moderation(), command_id="moderate")
    versions = [e.originator_version for e in here.repository.event_store.get(video)]
    assert versions == list(range(1, len(versions) + 1)) and here.video(video).state == "moderated"


def test_a_refusal_that_the_store_confirms_is_not_retried(writers: tuple[ProvenanceApp, ProvenanceApp]) -> None:
    here, _ = writers
    creator = here.register_person("erin")
    video = here.request_generation(creator, "a clip", command_id="req")
    with pytest.raises(RuleViolation):
        here.record_signature(video, signature(video), command_id="sign")  # not rendered, not moderated
    assert here.video(video).state == "requested"
