"""The demo's story through a real server process on 127.0.0.1, and the service's limits and sessions."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from provenance.bootstrap import System
from provenance.credentials.trust import TrustConfig
from provenance.credentials.verify import verify_file
from tests.api.conftest import PASSWORD, Api
from tests.api.support import cli, running_server, until
from tests.core.support import face
from tests.credentials.support import reencode

SMALL = {"duration_s": 1, "fps": 8, "width": 144, "height": 256}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[httpx.Client, Path]]:
    home = tmp_path / "home"
    cli(home, "pki", "init")
    with running_server(home) as client:
        yield client, home


def sign_in(client: httpx.Client, handle: str) -> dict[str, str]:
    response = client.post("/auth/sign-in", json={"handle": handle, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def test_the_whole_story_through_the_api(server: tuple[httpx.Client, Path], tmp_path: Path) -> None:
    client, home = server
    password_file = tmp_path / "password"
    password_file.write_text(PASSWORD)
    cli(home, "admin", "init", "root", "--password-file", str(password_file))
    for handle in ("alice", "bob", "tess"):
        assert client.post("/people", json={"handle": handle, "password": PASSWORD}).status_code == 201
    admin, alice, bob = sign_in(client, "root"), sign_in(client, "alice"), sign_in(client, "bob")
    assert client.post("/people/tess/roles", json={"role": "trust_and_safety"}, headers=admin).status_code == 200
    tess = sign_in(client, "tess")
    assert client.get("/review", headers=bob).status_code == 403

    # alice registers her likeness and lets everyone use it; bob makes a video with it
    cameo = client.post("/cameos", content=face(), headers={**alice, "Content-Type": "image/png"})
    assert cameo.status_code == 201 and cameo.json()["held"] is None, cameo.text
    cameo_id = cameo.json()["cameo_id"]
    grant = client.post(f"/cameos/{cameo_id}/grants", json={"audience": "everyone"}, headers=alice)
    grant_id = grant.json()["grant_id"]
    made = client.post("/videos", json={"prompt": "a red ball", "cameos": [cameo_id], **SMALL}, headers=bob)
    assert made.status_code == 202 and made.headers["location"] == f"/videos/{made.json()['video_id']}"
    video_id = made.json()["video_id"]
    state = until(
        lambda: (s := client.get(f"/videos/{video_id}", headers=bob).json()["state"]) in ("published", "blocked") and s,
        "the video to pass its gates",
    )
    assert state == "published"
    feed = client.get("/feed", headers=bob).json()
    assert video_id in [item["video_id"] for item in feed["items"]]

    # a platform verifies the file, and finds its manifest by content
    signed = client.get(f"/videos/{video_id}/file", headers=bob)
    assert signed.status_code == 200 and signed.headers["content-type"] == "video/mp4"
    file = tmp_path / "clip.mp4"
    file.write_bytes(signed.content)
    client_id, secret = cli(home, "client", "create", "a platform").split()
    issued = client.post(
        "/auth/token", data={"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret}
    )
    platform = {"Authorization": f"Bearer {issued.json()['access_token']}"}
    report = client.post("/verify", content=signed.content, headers={**platform, "Content-Type": "video/mp4"}).json()
    assert report["chain_state"] == "Trusted" and report["status"]["status"] == "published"
    matches = client.post(
        "/matches/byContent", content=signed.content, headers={**platform, "Content-Type": "video/mp4"}
    ).json()["matches"]
    assert matches and matches[0]["provenanceStatus"]["status"] == "published"
    manifest = client.get(f"/manifests/{matches[0]['manifestId']}", headers=platform)
    assert manifest.status_code == 200 and manifest.headers["content-type"] == "application/c2pa"
    # the manifest fetched by id validates the file it was made for
    anchors = TrustConfig(anchor_files=(home / "pki" / "trust-anchors.pem",))
    assert verify_file(file, anchors, manifest_store=manifest.content).state == "Trusted"
    # a stripped, re-encoded copy is found by its watermark, with the original's manifest id
    copy = reencode(file, tmp_path / "copy.mp4")
    found = client.post(
        "/matches/byContent", content=copy.read_bytes(), headers={**platform, "Content-Type": "video/mp4"}
    )
    assert [m["manifestId"] for m in found.json()["matches"]] == [matches[0]["manifestId"]]
    assert client.post("/videos", json={"prompt": "x"}, headers=platform).status_code == 403

    # alice revokes her consent: the video comes down, and platforms see why
    revoked = client.post(
        f"/cameos/{cameo_id}/grants/{grant_id}/revoke", json={"reason": "changed my mind"}, headers=alice
    )
    assert [t["video_id"] for t in revoked.json()["takedowns"]] == [video_id]
    assert video_id not in [item["video_id"] for item in client.get("/feed", headers=bob).json()["items"]]
    report = client.post("/verify", content=signed.content, headers={**platform, "Content-Type": "video/mp4"}).json()
    assert report["status"]["status"] == "taken_down"
    trail = client.get(f"/audit/{video_id}", headers=tess).json()
    assert trail[-1]["event_type"] == "TakedownIssued"
    assert client.get(f"/audit/{video_id}", headers=bob).status_code == 403

    # alice erases her likeness: the files that show it go too, and even trust and safety is told so
    assert client.get(f"/videos/{video_id}/file", headers=tess).status_code == 200
    assert client.post(f"/cameos/{cameo_id}/erase", json={"reason": "forget my face"}, headers=alice).status_code == 200
    gone = client.get(f"/videos/{video_id}/file", headers=tess)
    assert gone.status_code == 404 and "no longer kept" in gone.json()["detail"]


def test_limits_sessions_and_problems(api: Api) -> None:
    client = api.client
    too_big = client.post(
        "/cameos", content=b"x" * (10 * 2**20 + 1), headers={**api.headers("member"), "Content-Type": "image/png"}
    )
    assert too_big.status_code == 413 and too_big.headers["content-type"] == "application/problem+json"
    assert too_big.json()["exit_code"] == 2  # every problem says what the command line would exit with
    chunked = client.post(  # no declared length: refused as the stream passes the limit, not as unparsable
        "/people",
        content=iter([b'{"handle": "' + b"x" * 40_000] * 2 + [b'"}']),
        headers={"Content-Type": "application/json"},
    )
    assert chunked.status_code == 413 and chunked.json()["type"].endswith(":too-large"), chunked.text
    wrong_type = client.post("/cameos", content=b"x", headers={**api.headers("member"), "Content-Type": "text/html"})
    assert wrong_type.status_code == 415
    assert (
        "access-control-allow-origin" not in client.get("/health", headers={"Origin": "https://evil.example"}).headers
    )

    signed_in = client.post("/auth/sign-in", json={"handle": "member", "password": PASSWORD, "session": True})
    cookie = signed_in.headers["set-cookie"]
    assert "HttpOnly" in cookie and "samesite=strict" in cookie.lower()
    csrf = signed_in.json()["csrf_token"]
    client.headers.clear()
    assert client.get("/feed").status_code == 200  # the cookie alone reads
    forged = client.post("/people/auditor/follow")
    assert forged.status_code == 403 and "X-CSRF-Token" in forged.json()["detail"] and forged.json()["exit_code"] == 4
    assert client.post("/people/auditor/follow", headers={"X-CSRF-Token": csrf}).status_code == 204
    client.cookies.clear()

    spellings = ["member", "MEMBER", " \uff4d\uff45\uff4d\uff42\uff45\uff52 "]  # one account (full-width letters too)
    wrong = [
        client.post("/auth/sign-in", json={"handle": spellings[n % 3], "password": "wrong password!"}) for n in range(6)
    ]
    statuses = [r.status_code for r in wrong]
    # five tries a minute for the account, however its handle is spelt, the right one above included
    assert 429 in statuses and set(statuses[: statuses.index(429)]) == {401}
    assert "retry-after" in wrong[statuses.index(429)].headers and wrong[statuses.index(429)].json()["exit_code"] == 7
    assert wrong[0].json()["exit_code"] == 4 and client.get("/no-such-page").json()["exit_code"] == 3


def test_a_flood_from_one_token_is_slowed_down(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from provenance.api.accounts import Accounts
    from provenance.api.app import create_app
    from provenance.bootstrap import System
    from provenance.config import Settings
    from tests.api.conftest import make_people

    settings = Settings(home=tmp_path / "home", api_rate=5)
    system = System(settings)
    settings.home.mkdir(parents=True)
    accounts = Accounts(settings.keys_database)
    tokens = make_people(system, accounts)
    with TestClient(create_app(system, accounts)) as client:
        statuses = [
            client.get("/me", headers={"Authorization": f"Bearer {tokens['member']}"}).status_code for _ in range(30)
        ]
        other = client.get("/me", headers={"Authorization": f"Bearer {tokens['auditor']}"}).status_code
        guesses = [client.get("/me", headers={"Authorization": f"Bearer guess{n}"}).status_code for n in range(30)]
        nobody = [client.get("/me").status_code for _ in range(30)]
    assert 429 in statuses and statuses[0] == 200 and other == 200
    # callers without a token, or with one that is not, are slowed down by their address
    assert guesses[0] == 401 and 429 in guesses and 429 in nobody
    system.close()


def test_guesses_at_made_up_accounts_are_slowed_down_by_address_and_hash_a_few_at_a_time(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every guess costs a password hash, for a made-up handle or client as for a real one: one address gets a
    few a minute whatever it names, and the process computes only a few hashes at once however many ask."""
    import threading
    import time
    from types import SimpleNamespace

    from provenance.api.accounts import HASHES_AT_ONCE

    signing_in = [
        api.client.post("/auth/sign-in", json={"handle": f"nobody{n}", "password": "a guess"}).status_code
        for n in range(12)
    ]
    assert signing_in[0] == 401 and 429 in signing_in
    form = {"grant_type": "client_credentials", "client_id": "client_made_up", "client_secret": "a guess"}
    assert api.client.post("/auth/token", data=form).status_code == 429  # the same address's allowance

    hashing: list[int] = []
    running = 0
    lock = threading.Lock()

    def slow_verify(stored: str, secret: str) -> bool:
        nonlocal running
        with lock:
            running += 1
            hashing.append(running)
        time.sleep(0.05)
        with lock:
            running -= 1
        return False

    monkeypatch.setattr(api.accounts, "hasher", SimpleNamespace(verify=slow_verify))
    guesses = [threading.Thread(target=api.accounts.check_password, args=(f"person{n}", "a guess")) for n in range(12)]
    for guess in guesses:
        guess.start()
    for guess in guesses:
        guess.join()
    assert len(hashing) == 12 and max(hashing) <= HASHES_AT_ONCE


def test_a_verified_upload_is_never_named_by_its_place_on_the_server(api: Api) -> None:
    broken = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom\x00\x00\x00\x08free\x00\x00\x10\x00mdat" + b"z" * 100
    headers = {**api.headers("platform"), "Content-Type": "video/mp4"}
    answer = api.client.post("/verify", content=broken, headers=headers)
    assert answer.status_code == 200 and answer.json()["state"] != "Trusted"
    assert str(api.system.settings.home) not in answer.text and "upload-" not in answer.text
    assert "(the uploaded file)" in answer.json()["failure_details"][0]["explanation"]


def test_a_service_without_a_signing_identity_refuses_videos_without_naming_its_files(api: Api) -> None:
    before = api.system.app.recorder.max_notification_id()
    refused = api.client.post("/videos", json={"prompt": "a red ball"}, headers=api.headers("member"))
    assert refused.status_code == 503 and refused.json()["exit_code"] == 7, refused.text
    assert str(api.system.settings.home) not in refused.text
    assert api.system.app.recorder.max_notification_id() == before  # refused before anything was recorded

    from tests.core.support import moderation, rendered

    app = api.system.app
    held = app.request_generation(app.person_by_handle("member").id, "a ball")
    app.record_render(held, rendered(), command_id="r")
    app.record_moderation(held, moderation("review"), command_id="m")
    tess = api.headers("trust_and_safety")
    blocked = api.client.post(f"/videos/{held}/review", json={"verdict": "block", "statement": "gore"}, headers=tess)
    assert blocked.status_code == 200 and blocked.json()["state"] == "blocked", blocked.text  # no signing needed


def test_a_port_in_use_is_one_line_and_exit_2(tmp_path: Path) -> None:
    import socket
    import subprocess
    import sys

    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        env = {**os.environ, "PROVENANCE_HOME": str(tmp_path / "home")}
        done = subprocess.run(
            [sys.executable, "-m", "provenance.cli", "api", "--port", str(port)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == f"provenance: error: cannot listen on 127.0.0.1:{port}: Address already in use"


def test_a_problem_that_quotes_the_path_stays_on_one_line(api: Api) -> None:
    refused = api.client.post(
        "/people/a%0AFAKE:%20forged%0D%0A/follow", content=b"x", headers={"Content-Type": "text/plain"}
    )
    assert refused.status_code == 415
    detail = refused.json()["detail"]
    assert "\n" not in detail and "\r" not in detail and "FAKE: forged" in detail


def test_a_full_disk_is_the_services_storage_failing_not_a_database_out_of_reach(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    from projections.queries import ReadModels

    def no_space(*_: object, **__: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    from fastapi.testclient import TestClient

    monkeypatch.setattr(ReadModels, "feed", no_space)
    client = TestClient(api.client.app, raise_server_exceptions=False)  # answered as a caller sees it
    failed = client.get("/feed", headers=api.headers("member"))
    assert failed.status_code == 503 and failed.json()["exit_code"] == 6, failed.text
    assert failed.json()["type"].endswith(":storage-failure") and "incident" in failed.json()["detail"]


def test_videos_accepted_before_a_restart_are_taken_through_the_gates_after_it(tmp_path: Path) -> None:
    """A request is answered 202 before it is rendered: one the service accepted and did not finish before it
    stopped is taken up again when it starts; one a command line recorded is left to the process that drives it."""
    from fastapi.testclient import TestClient

    from provenance.api.accounts import Accounts
    from provenance.api.app import OVER_HTTP, create_app
    from provenance.bootstrap import System
    from provenance.config import Settings
    from provenance.credentials.pki import create_development_pki

    settings = Settings(home=tmp_path / "home", event_store="sqlite")
    system = System(settings)
    create_development_pki(settings.pki_directory)
    alice = system.app.register_person("alice")
    accepted = system.app.request_generation(alice, "a red ball", parameters=SMALL, command_id=f"{OVER_HTTP}k1")
    elsewhere = system.app.request_generation(alice, "a blue ball", parameters=SMALL)
    with TestClient(create_app(system, Accounts(settings.keys_database))):
        until(lambda: system.app.video(accepted).state == "published", "the accepted video", timeout_s=120)
    assert system.app.video(elsewhere).state == "requested"
    system.close()


def test_one_person_cannot_fill_the_render_queue_and_the_others_are_served_fairly(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The embedded service renders one video at a time: a person may have `api_max_queued` requests in its
    queue, no more, and another person's request goes before the second of theirs."""
    import threading

    from provenance.api.app import QUEUE_RETRY_S
    from provenance.credentials.pki import create_development_pki

    create_development_pki(api.system.settings.pki_directory)
    ctx = api.client.app.state.ctx
    monkeypatch.setattr(ctx, "gate_workers", lambda: None)
    rendering, driven = threading.Event(), []

    def drive(video_id: object, _: object) -> None:
        driven.append(str(video_id))
        assert rendering.wait(60)

    monkeypatch.setattr(api.system, "drive", drive)

    def ask(who: str, key: str) -> httpx.Response:
        headers = {**api.headers(who), "Idempotency-Key": key}
        return api.client.post("/videos", json={"prompt": "a red ball", **SMALL}, headers=headers)

    most = api.system.settings.api_max_queued
    mine = [ask("member", f"m{n}").json()["video_id"] for n in range(most)]
    until(lambda: driven, "the first video to hold the gate thread")
    before = api.system.app.recorder.max_notification_id()
    refused = ask("member", "one-more")
    assert refused.status_code == 429 and refused.json()["type"].endswith(":render-queue-full"), refused.text
    assert refused.headers["Retry-After"] == str(QUEUE_RETRY_S)
    assert api.system.app.recorder.max_notification_id() == before  # refused before anything was recorded
    again = ask("member", "m1")  # a retry of a request in the queue is answered, not counted
    assert again.status_code == 202 and again.json()["video_id"] == mine[1], again.text
    theirs = ask("trust_and_safety", "t0")
    assert theirs.status_code == 202, theirs.text

    rendering.set()
    until(lambda: not ctx.render_queue().waiting(), "the queue to empty")
    assert driven == [mine[0], theirs.json()["video_id"], *mine[1:]]
    assert ask("member", "after").status_code == 202


def embedded_service(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, drive: Callable[[Any, Any], None], **settings: Any
) -> tuple[System, FastAPI]:
    """A service on a fresh home whose gates are `drive` (no models loaded)."""
    from provenance.api.accounts import Accounts
    from provenance.api.app import ApiContext, create_app
    from provenance.config import Settings

    system = System(Settings(home=tmp_path / "home", event_store="sqlite", **settings))
    system.settings.home.mkdir(parents=True, exist_ok=True)
    monkeypatch.setattr(ApiContext, "gate_workers", lambda _: None)
    monkeypatch.setattr(system, "drive", drive)
    return system, create_app(system, Accounts(system.settings.keys_database))


def test_a_stop_finishes_the_video_in_the_gates_and_leaves_the_rest_of_the_queue(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    from fastapi.testclient import TestClient

    driven: list[str] = []

    def drive(video_id: Any, _: Any) -> None:
        driven.append(str(video_id))
        time.sleep(0.5)

    system, app = embedded_service(tmp_path, monkeypatch, drive)
    alice, bob = system.app.register_person("alice"), system.app.register_person("bob")
    with TestClient(app):
        for n in range(3):
            app.state.ctx.request_video(alice, f"a {n}", parameters=SMALL)
            app.state.ctx.request_video(bob, f"b {n}", parameters=SMALL)
        until(lambda: driven, "the first video in the gates")
    assert len(driven) == 1
    assert len(app.state.ctx.render_queue().waiting()) == 5  # taken up at the next start
    system.close()


@dataclass
class LeftQueued:
    """A service not yet started, and a request over HTTP that a stopped process left in its render queue."""

    system: System
    app: FastAPI
    video: Any
    queue: Any
    """The render queue as the stopped process saw it (its leases `lease_s` long)."""
    driven: list[str]


def left_queued(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lease_s: float) -> LeftQueued:
    from provenance.api.app import OVER_HTTP
    from provenance.log import stream_log
    from provenance.render_queue import RenderQueue

    driven: list[str] = []
    system, app = embedded_service(tmp_path, monkeypatch, lambda video_id, _: driven.append(str(video_id)))
    alice = system.app.register_person("alice")
    video = system.app.request_generation(alice, "a red ball", parameters=SMALL, command_id=f"{OVER_HTTP}k1")
    queue = RenderQueue(system.store.engine, lease_s=lease_s)
    queue.add(stream_log(system.app, video, "video")[0])
    return LeftQueued(system, app, video, queue, driven)


def test_a_request_a_stopped_process_held_is_taken_up_once_its_lease_lapses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fastapi.testclient import TestClient

    left = left_queued(tmp_path, monkeypatch, lease_s=1.5)
    system, app, video, driven = left.system, left.app, left.video, left.driven
    assert left.queue.claim("gone:1:1") is not None  # what the process held when it stopped
    with TestClient(app):
        until(lambda: driven == [str(video)], "the video its lease held", timeout_s=15)
        until(lambda: not app.state.ctx.render_queue().waiting(), "the queue to empty", timeout_s=15)
    system.close()


def test_a_failing_render_queue_is_logged_and_served_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The queue's database failing (a lock past its timeout, a full disk) stops the gate thread's round, says so,
    and the thread goes on after a while; the request it held is served again once its lease lapses."""
    import sqlalchemy as sa
    from fastapi.testclient import TestClient

    import provenance.api.app as service
    from provenance.render_queue import RenderQueue

    driven: list[str] = []
    system, app = embedded_service(tmp_path, monkeypatch, lambda video_id, _: driven.append(str(video_id)))
    monkeypatch.setattr(service, "QUEUE_RETRY_S", 0.2)
    failed: list[object] = []
    finish = RenderQueue.finish

    def finish_once_failing(queue: RenderQueue, claim: Any) -> bool:
        if not failed:
            failed.append(claim)
            raise sa.exc.OperationalError("DELETE", {}, Exception("database is locked"))
        return finish(queue, claim)

    monkeypatch.setattr(RenderQueue, "finish", finish_once_failing)
    alice, bob = system.app.register_person("alice"), system.app.register_person("bob")
    with TestClient(app):
        ctx = app.state.ctx
        ctx._queue = RenderQueue(system.store.engine, lease_s=1.5)
        first = ctx.request_video(alice, "a", parameters=SMALL)
        until(lambda: failed, "the queue to fail")
        second = ctx.request_video(bob, "b", parameters=SMALL)
        until(lambda: not ctx.render_queue().waiting(), "the queue to empty", timeout_s=15)
    assert driven[:2] == [str(first), str(second)] and set(driven) == {str(first), str(second)}
    assert any("stopped serving the render queue" in r.getMessage() for r in caplog.records)
    system.close()


def test_the_distributed_service_counts_the_places_it_admitted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a generator role running, a person's requests over the limit are still refused: the service
    queues what it admits itself, and the role finds each already queued when the topic delivers it."""
    from provenance.api.problems import ApiError

    system, app = embedded_service(tmp_path, monkeypatch, lambda *_: None, kafka_bootstrap="127.0.0.1:9")
    alice = system.app.register_person("alice")
    ctx = app.state.ctx
    for n in range(system.settings.api_max_queued):
        ctx.request_video(alice, f"a {n}", parameters=SMALL)
    with pytest.raises(ApiError) as refused:
        ctx.request_video(alice, "one more", parameters=SMALL)
    assert refused.value.status == 429
    assert len(ctx.render_queue().waiting()) == system.settings.api_max_queued
    system.close()


@pytest.mark.parametrize("reached", ["requested", "rendered"])
def test_a_video_that_took_the_service_down_every_time_is_given_up_on_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reached: str
) -> None:
    """Wherever it died: before its render was recorded (a render failure), or after (blocked at the next gate)."""
    import time

    from fastapi.testclient import TestClient

    from tests.core.support import rendered

    left = left_queued(tmp_path, monkeypatch, lease_s=0.05)
    system, app, video, driven = left.system, left.app, left.video, left.driven
    if reached == "rendered":
        system.app.record_render(video, rendered(), command_id=f"render:{video}")
    for attempt in range(left.queue.max_attempts):  # each time, the process died in the gates
        assert left.queue.claim(f"gone:{attempt}:1") is not None
        time.sleep(0.1)
    with TestClient(app):
        until(lambda: system.app.video(video).state != reached, "the video to be given up", timeout_s=15)
    given_up = system.app.video(video)
    assert given_up.state == ("render_failed" if reached == "requested" else "blocked"), given_up.state
    assert not driven and "stopped its worker 3 times" in given_up.block_reasons[0]
    assert not app.state.ctx.render_queue().waiting()
    system.close()


def test_a_client_that_leaves_mid_body_is_no_incident(
    api: Api, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Anybody can drop a connection mid-upload: logged as such, never as an internal error with its traceback."""
    import logging

    from fastapi.testclient import TestClient
    from starlette.requests import ClientDisconnect

    from projections.queries import ReadModels

    def gone(*_: object, **__: object) -> None:
        raise ClientDisconnect

    monkeypatch.setattr(ReadModels, "feed", gone)
    client = TestClient(api.client.app, raise_server_exceptions=False)
    with caplog.at_level(logging.INFO):
        answered = client.get("/feed", headers=api.headers("member"))
    assert answered.status_code == 400 and answered.json()["type"].endswith(":client-disconnected")
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_the_render_queue_as_a_whole_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Accounts made for the purpose each get their own places: the queue as a whole still takes no more than its
    bound, and a request past it is refused with nothing recorded."""
    from provenance.api.problems import ApiError

    distributed = {"kafka_bootstrap": "127.0.0.1:9", "api_max_queue": 6}
    system, app = embedded_service(tmp_path, monkeypatch, lambda *_: None, **distributed)
    ctx = app.state.ctx
    for n in range(3):
        person = system.app.register_person(f"made{n}")
        for m in range(2):
            ctx.request_video(person, f"{n} {m}", parameters=SMALL)
    real = system.app.register_person("real")
    before = system.app.recorder.max_notification_id()
    with pytest.raises(ApiError) as refused:
        ctx.request_video(real, "mine", parameters=SMALL)
    assert (refused.value.status, refused.value.kind) == (503, "render-queue-busy")
    assert refused.value.headers["Retry-After"] and system.app.recorder.max_notification_id() == before
    system.close()


def test_connections_that_never_finish_a_request_cannot_take_the_service(tmp_path: Path) -> None:
    """Sockets that open and send nothing (or a request head a byte at a time): one address holds only so many,
    each is closed once its head is overdue, and everybody else is answered meanwhile."""
    import socket
    import time

    from provenance.api.connections import REQUEST_HEAD_S

    def closed_by_server(connection: socket.socket, within_s: float) -> bool:
        connection.settimeout(within_s)
        try:
            return connection.recv(1) == b""
        except TimeoutError:
            return False
        except ConnectionResetError:
            return True

    home = tmp_path / "home"
    with running_server(home, api_connections_per_address="5") as client:
        port = int(str(client.base_url).rsplit(":", 1)[1].strip("/"))
        idle = []
        for n in range(8):
            connection = socket.create_connection(("127.0.0.1", port), source_address=("127.0.0.2", 0))
            if n == 0:
                connection.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
            idle.append(connection)
        try:
            assert all(closed_by_server(c, 5) for c in idle[5:])  # past the address's share, at once
            assert client.get("/health").status_code == 200  # another address is answered
            started = time.monotonic()
            assert not any(closed_by_server(c, 0.5) for c in idle[:5])
            assert all(closed_by_server(c, REQUEST_HEAD_S + 5) for c in idle[:5])  # their heads overdue
            assert time.monotonic() - started < REQUEST_HEAD_S + 5
        finally:
            for connection in idle:
                connection.close()


def test_files_received_at_once_are_bounded_per_caller_and_in_all() -> None:
    """Each file may be hundreds of MiB on the data directory's disk until it is verified."""
    from contextlib import ExitStack

    from provenance.api.problems import ApiError
    from provenance.api.security import UPLOADS_AT_ONCE, UPLOADS_PER_CALLER, Uploads

    uploads = Uploads()
    with ExitStack() as receiving:
        for _ in range(UPLOADS_PER_CALLER):
            receiving.enter_context(uploads.receiving("a member"))
        with pytest.raises(ApiError) as one_too_many:
            receiving.enter_context(uploads.receiving("a member"))
        assert one_too_many.value.status == 429 and one_too_many.value.headers["Retry-After"]
        for n in range(UPLOADS_AT_ONCE - UPLOADS_PER_CALLER):
            receiving.enter_context(uploads.receiving(f"caller {n}"))
        with pytest.raises(ApiError) as busy:
            receiving.enter_context(uploads.receiving("somebody else"))
        assert busy.value.status == 503
    with uploads.receiving("a member"), uploads.receiving("a member"):  # every place given back
        pass


def test_sign_ups_are_counted_per_network_not_per_address() -> None:
    """One party holds a whole IPv6 /64 (and often an IPv4 /24): five accounts a minute for all its addresses."""
    from types import SimpleNamespace

    from provenance.api.security import client_network

    def network(host: str) -> str:
        return client_network(SimpleNamespace(client=SimpleNamespace(host=host)))  # type: ignore[arg-type]

    assert network("2001:db8:1:2:aaaa::1") == network("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64"
    assert network("2001:db8:1:3::1") != network("2001:db8:1:2::1")
    assert network("203.0.113.7") == network("203.0.113.200") == "203.0.113.0/24"
    assert network("::ffff:203.0.113.9") == "203.0.113.0/24"
    assert network("testclient") == "testclient"
