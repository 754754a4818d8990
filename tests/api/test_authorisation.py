"""Every endpoint times every role, and no token, an expired token, a revoked token."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest

from tests.api.conftest import Api

PEOPLE = {"member", "trust_and_safety", "auditor", "administrator"}
MEMBERS = {"member", "trust_and_safety", "administrator"}
"""Who has the member role: the auditor's account reads everything and changes nothing."""
EVERYONE = PEOPLE | {"platform"}
TS = {"trust_and_safety"}
ADMIN = {"administrator"}

EXPECTED: dict[tuple[str, str], set[str]] = {
    ("GET", "/me"): PEOPLE,
    ("POST", "/people/{handle}/roles"): ADMIN,
    ("POST", "/people/{handle}/roles/revoke"): ADMIN,
    ("POST", "/clients"): ADMIN,
    ("POST", "/clients/{client_id}/revoke"): ADMIN,
    ("GET", "/people/{handle}"): PEOPLE,
    ("POST", "/people/{handle}/follow"): MEMBERS,
    ("POST", "/people/{handle}/unfollow"): MEMBERS,
    ("POST", "/cameos"): MEMBERS,
    ("POST", "/cameos/{cameo_id}/grants"): MEMBERS,
    ("POST", "/cameos/{cameo_id}/grants/{grant_id}/revoke"): MEMBERS,
    ("POST", "/cameos/{cameo_id}/grants/{grant_id}/unapprove"): MEMBERS,
    ("POST", "/cameos/{cameo_id}/erase"): MEMBERS,
    ("GET", "/cameos/{cameo_id}/videos"): MEMBERS,
    ("GET", "/cameos/{cameo_id}/grants"): PEOPLE,
    ("POST", "/cameos/{cameo_id}/review"): TS,
    ("POST", "/videos"): MEMBERS,
    ("GET", "/videos/{video_id}"): PEOPLE,
    ("GET", "/videos/{video_id}/file"): PEOPLE,
    ("GET", "/review"): TS | {"auditor"},
    ("POST", "/videos/{video_id}/review"): TS,
    ("POST", "/videos/{video_id}/publish"): MEMBERS,
    ("POST", "/videos/{video_id}/takedowns"): MEMBERS,
    ("POST", "/videos/{video_id}/takedowns/{case_id}/appeal"): MEMBERS,
    ("POST", "/videos/{video_id}/takedowns/{case_id}/reinstate"): TS,
    ("GET", "/feed"): PEOPLE,
    ("GET", "/audit/{stream_id}"): {"auditor", "trust_and_safety", "administrator"},
    ("GET", "/parked"): {"administrator", "auditor"},
    ("POST", "/verify"): EVERYONE,
    ("GET", "/matches/byBinding"): EVERYONE,
    ("POST", "/matches/byBinding"): EVERYONE,
    ("POST", "/matches/byContent"): EVERYONE,
    ("GET", "/manifests/{manifest_id}"): EVERYONE,
    ("GET", "/services/supportedAlgorithms"): EVERYONE,
    ("POST", "/auth/sign-out"): EVERYONE,  # last: it revokes the token it is called with, whatever its scopes
}

PUBLIC = {
    ("GET", "/health"),
    ("GET", "/ready"),
    ("POST", "/people"),
    ("POST", "/auth/sign-in"),
    ("POST", "/auth/token"),
}

UPLOADS = {"/cameos": "image/png", "/verify": "video/mp4", "/matches/byContent": "video/mp4"}


def routes(api: Api) -> set[tuple[str, str]]:
    """Every operation the service documents (the OpenAPI document lists each route of each router)."""
    paths = api.client.get("/openapi.json").json()["paths"]
    return {(method.upper(), path) for path, operations in paths.items() for method in operations}


def call(api: Api, method: str, template: str, headers: dict[str, str]) -> Any:
    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        return str(uuid.uuid4()) if name.endswith(("cameo_id", "video_id", "stream_id")) else "member"

    path = re.sub(r"\{(\w+)\}", fill, template)
    if method == "GET":
        return api.client.get(path, headers=headers)
    if template in UPLOADS:
        return api.client.post(path, content=b"not a real file", headers={**headers, "Content-Type": UPLOADS[template]})
    return api.client.post(path, json={}, headers=headers)


def test_every_endpoint_declares_who_may_call_it(api: Api) -> None:
    assert routes(api) == set(EXPECTED) | PUBLIC


def recorded(api: Api) -> int:
    return api.system.app.recorder.max_notification_id() or 0


@pytest.mark.parametrize("who", sorted(EVERYONE))
def test_each_role_reaches_exactly_its_endpoints(api: Api, who: str) -> None:
    for (method, template), allowed in EXPECTED.items():
        before = recorded(api)
        response = call(api, method, template, api.headers(who))
        if who not in allowed:
            assert recorded(api) == before, (who, method, template)  # nothing recorded on a refusal
        problem = response.headers.get("content-type") == "application/problem+json"
        kind = response.json()["type"] if problem else ""
        assert response.status_code < 500, (method, template, response.text)
        assert response.status_code != 401, (who, method, template, response.text)
        refused = response.status_code == 403 and kind.endswith(":forbidden")
        assert refused == (who not in allowed), (who, method, template, response.status_code, response.text)


def test_no_token_an_expired_token_and_a_revoked_token_get_401(api: Api) -> None:
    member = api.tokens["member"]
    revoked_secret, revoked = api.accounts.issue("person", api.accounts.lookup(member).subject, ["read"], 3600)  # type: ignore[union-attr]
    api.accounts.revoke(revoked.token_id)
    for method, template in EXPECTED:
        for headers in ({}, {"Authorization": f"Bearer {revoked_secret}"}, {"Authorization": "Bearer pvt_made-up"}):
            response = call(api, method, template, headers)
            assert response.status_code == 401, (method, template, headers, response.text)
            assert response.headers["content-type"] == "application/problem+json"
            assert response.headers["www-authenticate"].startswith("Bearer")
    api.clock.now += 3601  # every token of the fixture has expired
    for who in EVERYONE:
        assert api.client.get("/feed", headers=api.headers(who)).status_code == 401


def test_a_scoped_token_does_only_what_its_scopes_allow(api: Api) -> None:
    person = api.accounts.lookup(api.tokens["member"]).subject  # type: ignore[union-attr]
    secret, _ = api.accounts.issue("person", person, ["read"], 3600)
    headers = {"Authorization": f"Bearer {secret}"}
    assert api.client.get("/feed", headers=headers).status_code == 200
    refused = api.client.post("/videos", json={"prompt": "a cat"}, headers=headers)
    assert refused.status_code == 403 and "scope 'write'" in refused.json()["detail"]


def test_a_revoked_role_takes_effect_at_the_next_call(api: Api) -> None:
    headers = api.headers("trust_and_safety")
    assert api.client.get("/review", headers=headers).status_code == 200
    revoked = api.client.post(
        "/people/trust-and-safety/roles/revoke",
        json={"role": "trust_and_safety", "reason": "left the team"},
        headers=api.headers("administrator"),
    )
    assert revoked.status_code == 200 and "trust_and_safety" not in revoked.json()["roles"]
    assert api.client.get("/review", headers=headers).status_code == 403


def test_only_an_administrator_grants_roles_and_the_change_is_an_event(api: Api) -> None:
    from provenance.log import stream_log

    denied = api.client.post("/people/member/roles", json={"role": "trust_and_safety"}, headers=api.headers("member"))
    assert denied.status_code == 403
    granted = api.client.post("/people/member/roles", json={"role": "auditor"}, headers=api.headers("administrator"))
    assert granted.status_code == 200 and "auditor" in granted.json()["roles"]
    member = api.system.app.person_by_handle("member")
    admin = api.system.app.person_by_handle("administrator")
    [event] = [e for e in stream_log(api.system.app, member.id, "person") if e.event_type == "RoleGranted"]
    assert event.payload == {"role": "auditor"} and event.actor == str(admin.id)


def test_the_command_line_offers_the_services_scopes() -> None:
    from provenance.api.accounts import SCOPES
    from provenance.cli.parser import SCOPES as CLI_SCOPES

    assert CLI_SCOPES == SCOPES


def test_another_persons_token_cannot_act_on_your_cameo(api: Api) -> None:
    from tests.core.support import face

    owner = api.client.post("/cameos", content=face(), headers={**api.headers("member"), "Content-Type": "image/png"})
    cameo_id = owner.json()["cameo_id"]
    grant = api.client.post(f"/cameos/{cameo_id}/grants", json={"audience": "everyone"}, headers=api.headers("member"))
    grant_id = grant.json()["grant_id"]
    before = recorded(api)
    for who in ("administrator",):  # a member like the owner, but not the owner (trust and safety may revoke)
        response = api.client.post(
            f"/cameos/{cameo_id}/grants/{grant_id}/revoke", json={"reason": "not mine"}, headers=api.headers(who)
        )
        assert response.status_code == 403 and response.json()["type"].endswith(":not-permitted"), response.text
        erase = api.client.post(f"/cameos/{cameo_id}/erase", json={"reason": "not mine"}, headers=api.headers(who))
        assert erase.status_code == 403
    assert recorded(api) == before


def test_an_idempotency_key_is_its_callers_own(api: Api) -> None:
    from tests.core.support import face, pass_gates

    app = api.system.app
    key = {"Idempotency-Key": "retry-0001"}
    image = {"Content-Type": "image/png"}
    mine = api.client.post("/cameos", content=face(), headers={**api.headers("member"), **image, **key})
    again = api.client.post("/cameos", content=face(), headers={**api.headers("member"), **image, **key})
    assert mine.status_code == again.status_code == 201 and mine.json() == again.json()  # a retry: nothing twice
    theirs = api.client.post("/cameos", content=face(3), headers={**api.headers("administrator"), **image, **key})
    assert theirs.status_code == 201 and theirs.json()["cameo_id"] != mine.json()["cameo_id"]  # not a conflict

    video = app.request_generation(app.person_by_handle("member").id, "mine")
    pass_gates(app, video)
    published = api.client.post(f"/videos/{video}/publish", headers={**api.headers("member"), **key})
    assert published.status_code == 200 and published.json()["state"] == "published"
    before = recorded(api)
    for who in ("administrator", "auditor"):  # neither may take it down, nor publish it, whatever key they send
        takedown = api.client.post(
            f"/videos/{video}/takedowns",
            json={"reason_code": "spam", "statement": "not yours"},
            headers={**api.headers(who), **key},
        )
        assert takedown.status_code == 403, takedown.text
        assert api.client.post(f"/videos/{video}/publish", headers={**api.headers(who), **key}).status_code == 403
    assert recorded(api) == before


def test_any_token_can_revoke_itself(api: Api) -> None:
    for who in ("platform", "member"):
        person_or_client = api.accounts.lookup(api.tokens[who])
        assert person_or_client is not None
        narrow, _ = api.accounts.issue(person_or_client.kind, person_or_client.subject, ["verify"], 3600)
        headers = {"Authorization": f"Bearer {narrow}"}
        assert api.client.post("/auth/sign-out", headers=headers).status_code == 204
        assert api.client.get("/services/supportedAlgorithms", headers=headers).status_code == 401


def test_a_new_client_gets_the_scopes_its_answer_names(api: Api) -> None:
    admin = api.headers("administrator")
    assert api.client.post("/clients", json={"name": "none", "scopes": []}, headers=admin).status_code == 422
    made = api.client.post("/clients", json={"name": "reader", "scopes": ["read"]}, headers=admin).json()
    token = api.client.post(
        "/auth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": made["client_id"],
            "client_secret": made["client_secret"],
        },
    ).json()
    assert made["scopes"] == token["scope"].split() == ["read"]


def test_a_creator_sees_an_unsigned_render_only_while_a_person_reviews_it(api: Api) -> None:
    from tests.core.support import moderation, rendered

    app = api.system.app
    member = app.person_by_handle("member").id
    render = b"an unsigned render: no manifest, no watermark" * 4
    uri = api.system.blobs.put_bytes(render).uri

    def moderated(verdict: str) -> str:
        video = app.request_generation(member, f"a ball, {verdict}")
        made = rendered(blob_uri=uri, content_sha256=uri.rsplit(":", 1)[1], size_bytes=len(render))
        app.record_render(video, made, command_id=f"render:{video}")
        app.record_moderation(video, moderation(verdict), command_id=f"moderate:{video}")
        return f"/videos/{video}/file"

    held, blocked = moderated("review"), moderated("block")
    assert api.client.get(held, headers=api.headers("member")).content == render  # for the creator to see
    assert api.client.get(blocked, headers=api.headers("member")).status_code == 404  # the gate stopped it
    assert api.client.get(blocked, headers=api.headers("trust_and_safety")).content == render


def test_a_changed_password_ends_every_session_and_token(api: Api) -> None:
    from tests.api.conftest import PASSWORD

    person = api.accounts.lookup(api.tokens["administrator"])
    assert person is not None
    assert api.client.get("/me", headers=api.headers("administrator")).status_code == 200
    api.accounts.set_password(person.subject, PASSWORD + " and a new one")
    assert api.client.get("/me", headers=api.headers("administrator")).status_code == 401


def test_the_openapi_document_describes_the_service_as_it_behaves(api: Api) -> None:
    paths = api.client.get("/openapi.json").json()["paths"]
    for method, template in EXPECTED:  # every protected operation says how to authenticate
        assert paths[template][method.lower()].get("security"), (method, template)
    for method, template in PUBLIC:
        assert "security" not in paths[template][method.lower()], (method, template)
    problem = paths["/videos"]["post"]["responses"]["4XX"]["content"]["application/problem+json"]
    assert problem["schema"]["$ref"].endswith("/Problem") and "422" not in paths["/videos"]["post"]["responses"]
    assert "Idempotency-Key" in [p["name"] for p in paths["/videos"]["post"]["parameters"]]
    for upload, media_type in UPLOADS.items():
        assert media_type in paths[upload]["post"]["requestBody"]["content"], upload
