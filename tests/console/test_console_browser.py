"""The console in a real browser (headless Chromium driven by Playwright) against a real server process.

Each test asserts on what the page shows (text, the player's `currentTime` advancing), not on its HTML, and
saves a screenshot under `test-results/console/`.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from provenance.api.accounts import Accounts
from provenance.application.service import OPERATOR
from provenance.bootstrap import System
from provenance.config import Settings
from tests.api.conftest import PASSWORD
from tests.api.support import running_server
from tests.core.support import face, moderation

SMALL = {"duration_s": 2, "fps": 8, "width": 144, "height": 256}
RESULTS = Path(__file__).resolve().parents[2] / "test-results" / "console"


def until_true(page: Any, expression: str, timeout_ms: float = 30_000) -> None:
    """Wait for a JavaScript expression to hold, evaluated from outside the page: Playwright's own
    `wait_for_function` compiles its predicate inside the page, which the console's Content-Security-Policy
    (no eval) forbids, as it should."""
    import time

    from playwright.sync_api import Error

    deadline = time.monotonic() + timeout_ms / 1000
    while True:
        try:
            if page.evaluate(expression):
                return
        except Error as exc:  # the page is navigating (a form answered): ask the next one
            if "context was destroyed" not in str(exc):
                raise
        assert time.monotonic() < deadline, f"timed out waiting for {expression}"
        time.sleep(0.1)


def chromium() -> str:
    path = os.environ.get("PROVENANCE_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        pytest.skip("no Chromium on PATH (apt-get install chromium; scripts/test installs it)")
    return path


@dataclass
class Story:
    base_url: str
    home: Path
    published: str
    """bob's video with alice's cameo, published through every gate."""
    held: str
    """bob's video that a classifier held for review."""
    grant_id: str


def flagged() -> Any:
    """A `review` verdict with the evidence a moderator checks: one segment, 0.5 to 1.5 s."""
    decided = moderation("block").model_dump()
    decided["verdict"] = "review"
    decided["reasons"] = ["policy.violence near its threshold"]
    decided["classifiers"][0] |= {"outcome": "review", "segments": [{"start_s": 0.5, "end_s": 1.5, "score": 0.6}]}
    return type(moderation()).model_validate(decided)


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Story]:
    from provenance.credentials.pki import create_development_pki

    home = tmp_path_factory.mktemp("console") / "home"
    settings = Settings(home=home)
    create_development_pki(settings.pki_directory)
    system = System(settings)
    app = system.app
    accounts = Accounts(settings.keys_database)
    people = {handle: app.register_person(handle) for handle in ("alice", "bob", "tess", "audrey", "mia")}
    app.change_role(OPERATOR, people["tess"], "trust_and_safety", grant=True)
    app.change_role(OPERATOR, people["audrey"], "auditor", grant=True)
    for person in people.values():
        accounts.set_password(str(person), PASSWORD)
    accounts.close()
    cameo = app.register_cameo(people["alice"], face())
    grant = app.grant_consent(people["alice"], cameo, "everyone")
    every_gate = system.gate_workers(render=True, moderate=True, sign=True)
    published = app.request_generation(people["bob"], "a red ball", parameters=SMALL, cameo_ids=[cameo])
    assert system.drive(published, every_gate).state == "published"
    held = app.request_generation(people["bob"], "a blue ball", parameters=SMALL)
    system.drive(held, system.gate_workers(render=True))
    app.record_moderation(held, flagged(), command_id=f"moderate:{held}")
    system.catch_up()
    system.close()
    with running_server(home) as client:
        yield Story(str(client.base_url), home, str(published), str(held), grant)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=chromium(), args=["--no-sandbox", "--autoplay-policy=no-user-gesture-required"]
        )
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 390, "height": 844})  # a phone-width screen
    opened = context.new_page()
    opened.set_default_timeout(30_000)
    yield opened
    RESULTS.mkdir(parents=True, exist_ok=True)
    opened.screenshot(path=str(RESULTS / f"{request.node.name}.png"), full_page=True)
    context.close()


def sign_in(page: Any, story: Story, handle: str, then: str = "/console") -> None:
    page.goto(f"{story.base_url}/console/sign-in?next={then}")
    page.get_by_label("Handle").fill(handle)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"**{then}")


def plays(page: Any) -> bool:
    """Whether the page's player advances when played."""
    until_true(page, "document.getElementById('player') && document.getElementById('player').readyState >= 2")
    page.evaluate("document.getElementById('player').play()")
    until_true(page, "document.getElementById('player').currentTime > 0.3", timeout_ms=15_000)
    return True


def test_trust_and_safety_releases_a_held_video(page: Any, story: Story) -> None:
    sign_in(page, story, "tess", "/console/review")
    held = page.locator("article", has_text="a blue ball")
    held.get_by_label("Statement of reasons").fill("a toy ball, nothing violent")
    held.get_by_role("button", name="Allow").click()
    page.wait_for_url(f"**/console/videos/{story.held}")
    until_true(page, "document.getElementById('state').textContent === 'published'", timeout_ms=120_000)
    assert "reviewed by tess: a toy ball, nothing violent" in page.inner_text("main")
    assert plays(page)
    page.goto(f"{story.base_url}/console/review")
    assert "No video is held for review." in page.inner_text("main")


def test_a_flagged_segment_seeks_the_player(page: Any, story: Story) -> None:
    sign_in(page, story, "tess", f"/console/videos/{story.held}")
    until_true(page, "document.getElementById('player').readyState >= 1")
    page.evaluate(
        "document.getElementById('player').addEventListener('seeked',"
        " (e) => { window.seekedTo = e.target.currentTime; }, {once: true})"
    )
    page.get_by_role("button", name="0.5 to 1.5 s, score 0.60").click()
    until_true(page, "window.seekedTo !== undefined", timeout_ms=10_000)
    assert abs(page.evaluate("window.seekedTo") - 0.5) < 0.2  # the player jumped to the segment's start
    assert page.evaluate("document.activeElement.id") == "player"


def test_an_auditor_follows_a_stripped_copy_to_the_original(page: Any, story: Story, tmp_path: Path) -> None:
    from tests.credentials.support import reencode

    system = System(Settings(home=story.home))
    signed = system.app.video(story.published).signature
    assert signed is not None
    copy = reencode(system.blobs.resolve(signed.signed_uri), tmp_path / "stripped copy.mp4")
    system.close()
    sign_in(page, story, "audrey", "/console/verify")
    page.get_by_label("Video file").set_input_files(str(copy))
    page.get_by_role("button", name="Verify").click()
    page.get_by_text("open the original's page").click()
    page.wait_for_url(f"**/console/videos/{story.published}")
    assert story.published in page.inner_text("h1")
    assert "a red ball" in page.inner_text("main")


def test_a_cameo_owner_revokes_a_grant_and_the_video_leaves_the_feed(page: Any, story: Story) -> None:
    sign_in(page, story, "alice", "/console")
    assert "a red ball" in page.inner_text("main")
    page.goto(f"{story.base_url}/console/cameos")
    page.get_by_label("Reason for revoking").fill("I changed my mind")
    page.get_by_role("button", name="Revoke").click()
    page.wait_for_url("**/console/cameos")
    assert "revoked: I changed my mind" in page.inner_text("main")
    page.goto(f"{story.base_url}/console")
    assert "a red ball" not in page.inner_text("main")
    page.goto(f"{story.base_url}/console/videos/{story.published}")
    assert "consent revoked" in page.inner_text("main")


def test_a_member_cannot_open_the_review_queue(page: Any, story: Story) -> None:
    sign_in(page, story, "mia", "/console")
    assert page.get_by_role("link", name="Review").count() == 0
    response = page.goto(f"{story.base_url}/console/review")
    assert response.status == 403
    assert "Not allowed" in page.inner_text("h1")
