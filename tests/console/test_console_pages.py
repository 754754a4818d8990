"""The console's pages in-process: sessions and CSRF, access, statements of reasons, confirmations."""

from __future__ import annotations

from typing import Any

import pytest

from kernel.errors import InvalidInput
from provenance.console.statements import block_statement, category_of, takedown_statement
from tests.api.conftest import PASSWORD, Api
from tests.core.support import face, publish_new


def signed_in(api: Api, handle: str) -> str:
    """Signs the test client in through the form; returns the page's CSRF token."""
    response = api.client.post("/console/sign-in", data={"handle": handle, "password": PASSWORD})
    assert response.status_code == 200, response.text  # followed the redirect to the feed
    marker = 'name="csrf" value="'
    text = response.text
    return text[text.index(marker) + len(marker) :].split('"', 1)[0]


def test_pages_send_a_caller_without_a_session_to_sign_in_and_back(api: Api) -> None:
    response = api.client.get("/console/cameos", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/console/sign-in?next=/console/cameos"
    signed = api.client.post(
        "/console/sign-in",
        data={"handle": "member", "password": PASSWORD, "next": "https://evil.example/"},
        follow_redirects=False,
    )
    assert signed.headers["location"] == "/console"  # never off the site
    for cross_site in ({"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"}):
        forged = api.client.post(  # another site's form signing the browser in to an account of its choosing
            "/console/sign-in",
            data={"handle": "member", "password": PASSWORD},
            headers=cross_site,
            follow_redirects=False,
        )
        assert forged.status_code == 403 and "set-cookie" not in forged.headers
    cookie = signed.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    policy = api.client.get("/console/sign-in").headers["content-security-policy"]
    assert "script-src 'self'" in policy and "default-src 'none'" in policy and "unsafe-inline" not in policy


def test_a_form_without_the_sessions_csrf_token_changes_nothing(api: Api) -> None:
    app = api.system.app
    member = app.person_by_handle("member").id
    cameo = app.register_cameo(member, face())
    grant = app.grant_consent(member, cameo, "everyone")
    csrf = signed_in(api, "member")
    before = app.recorder.max_notification_id()
    forged = api.client.post(f"/console/cameos/{cameo}/grants/{grant}/revoke", data={"reason": "forged"})
    assert forged.status_code == 403 and "Not allowed" in forged.text
    assert app.recorder.max_notification_id() == before
    done = api.client.post(f"/console/cameos/{cameo}/grants/{grant}/revoke", data={"reason": "mine", "csrf": csrf})
    assert done.status_code == 200 and "revoked: mine" in done.text


def test_the_console_acts_only_for_its_session_not_a_bearer_token_beside_any_cookie(api: Api) -> None:
    app = api.system.app
    member = app.person_by_handle("member").id
    cameo = app.register_cameo(member, face())
    read_only, _ = api.accounts.issue("person", str(member), ["read"], 3600)
    before = app.recorder.max_notification_id()
    for cookie in ("anything", read_only):  # a made-up cookie, or the token itself as one (not a session)
        api.client.cookies.set("provenance_session", cookie)
        forged = api.client.post(
            f"/console/cameos/{cameo}/grants",
            data={"audience": "mutuals"},
            headers={"Authorization": f"Bearer {read_only}"},
            follow_redirects=False,
        )
        assert forged.status_code == 303 and forged.headers["location"].startswith("/console/sign-in")
    assert app.recorder.max_notification_id() == before
    api.client.cookies.clear()


def test_console_forms_need_the_role_the_api_needs(api: Api) -> None:
    from provenance.application.service import OPERATOR

    app = api.system.app
    member = app.person_by_handle("member").id
    cameo = app.register_cameo(member, face())
    grant = app.grant_consent(member, cameo, "everyone")
    csrf = signed_in(api, "member")
    app.change_role(OPERATOR, member, "member", grant=False, reason="suspended")
    before = app.recorder.max_notification_id()
    for path, data in [
        (f"/console/cameos/{cameo}/grants", {"audience": "mutuals"}),
        (f"/console/cameos/{cameo}/grants/{grant}/revoke", {"reason": "still me"}),
        (f"/console/cameos/{cameo}/erase", {"reason": "gone", "confirm": "erase"}),
    ]:
        refused = api.client.post(path, data={**data, "csrf": csrf})
        assert refused.status_code == 403 and "member" in refused.text, path
    assert app.recorder.max_notification_id() == before


def test_erasure_needs_its_confirmation(api: Api) -> None:
    app = api.system.app
    cameo = app.register_cameo(app.person_by_handle("member").id, face())
    csrf = signed_in(api, "member")
    refused = api.client.post(f"/console/cameos/{cameo}/erase", data={"reason": "gone", "csrf": csrf})
    assert refused.status_code == 400 and "type &#34;erase&#34;" in refused.text
    assert not app.cameo(cameo).erased
    done = api.client.post(f"/console/cameos/{cameo}/erase", data={"reason": "gone", "confirm": "erase", "csrf": csrf})
    assert done.status_code == 200 and app.cameo(cameo).erased


def test_statements_of_reasons_in_the_dsa_format(api: Api) -> None:
    app = api.system.app
    safety = app.person_by_handle("trust-and-safety").id
    video = publish_new(app, app.person_by_handle("member").id, "a clip")
    [record] = app.take_down(
        video, safety, reason_code="violence", statement_of_reasons="graphic violence", source="notice"
    )
    signed_in(api, "auditor")
    page = api.client.get(f"/console/videos/{video}/statements/{record.case_id}")
    assert page.status_code == 200 and "DECISION_GROUND_INCOMPATIBLE_CONTENT" in page.text
    download = api.client.get(f"/console/videos/{video}/statements/{record.case_id}?format=json")
    assert "attachment" in download.headers["content-disposition"]
    statement: dict[str, Any] = download.json()
    assert statement["decision_visibility"] == ["DECISION_VISIBILITY_CONTENT_REMOVED"]
    assert statement["category"] == "STATEMENT_CATEGORY_VIOLENCE"
    assert statement["content_type"] == ["CONTENT_TYPE_SYNTHETIC_MEDIA", "CONTENT_TYPE_VIDEO"]
    assert statement["source_type"] == "SOURCE_ARTICLE_16"
    assert statement["automated_detection"] == "No" and statement["automated_decision"].endswith("NOT_AUTOMATED")
    assert statement["decision_facts"] == "graphic violence" and statement["application_date"]


def test_statement_fields_follow_the_case() -> None:
    case = {
        "case_id": "c1",
        "reason_code": "consent_revoked",
        "legal_ground": "Art. 6 GDPR",
        "statement_of_reasons": "the person shown withdrew consent",
        "automated": True,
        "source": "consent_revocation",
        "issued_at": "2026-12-03T10:00:00+00:00",
    }
    statement = takedown_statement(case, {"video_id": "v1", "requested_at": "2026-12-01T09:00:00+00:00"})
    assert statement["decision_ground"] == "DECISION_GROUND_ILLEGAL_CONTENT"
    assert statement["illegal_content_legal_ground"] == "Art. 6 GDPR"
    assert statement["category"] == "STATEMENT_CATEGORY_NON_CONSENSUAL_BEHAVIOUR"
    assert statement["automated_decision"] == "AUTOMATED_DECISION_FULLY"
    assert (statement["application_date"], statement["content_date"]) == ("2026-12-03", "2026-12-01")
    assert category_of("something else") == "STATEMENT_CATEGORY_SCOPE_OF_PLATFORM_SERVICE"
    blocked = block_statement(
        {"video_id": "v2", "state": "blocked", "block_gate": "moderation", "block_reasons": ["reviewed by tess: gore"]}
    )
    assert blocked is not None and blocked["automated_decision"] == "AUTOMATED_DECISION_PARTIALLY"
    assert blocked["decision_visibility"] == ["DECISION_VISIBILITY_CONTENT_DISABLED"]
    assert block_statement({"state": "published"}) is None


def test_read_pages_need_no_script(api: Api) -> None:
    app = api.system.app
    video = publish_new(app, app.person_by_handle("member").id, "a quiet clip")
    signed_in(api, "member")
    feed = api.client.get("/console").text
    assert "a quiet clip" in feed and "AI-generated" in feed and f"/console/videos/{video}" in feed
    page = api.client.get(f"/console/videos/{video}").text
    assert 'State: <strong id="state">published</strong>' in page


def test_a_cameo_owner_takes_down_a_video_with_their_likeness_from_my_cameos(api: Api) -> None:
    app = api.system.app
    owner = app.person_by_handle("member").id
    cameo = app.register_cameo(owner, face())
    app.grant_consent(owner, cameo, "everyone")
    other = app.person_by_handle("administrator").id
    video = publish_new(app, other, "someone else's clip", cameo_ids=[cameo])
    csrf = signed_in(api, "member")
    page = api.client.get("/console/cameos").text
    assert f"/console/videos/{video}" in page and "Take down" in page
    done = api.client.post(
        f"/console/videos/{video}/takedowns",
        data={"csrf": csrf, "back": "/console/cameos", "reason_code": "likeness_owner_request", "statement": "not me"},
    )
    assert done.status_code == 200 and done.url.path == "/console/cameos"
    [case] = app.video(video).open_cases()
    assert case.source == "cameo_owner" and case.statement_of_reasons == "not me"


def test_console_forms_refuse_what_the_api_refuses(api: Api) -> None:
    from provenance.application.service import OPERATOR

    app = api.system.app
    member = app.person_by_handle("member").id
    cameo = app.register_cameo(member, face())
    csrf = signed_in(api, "member")
    many = [app.register_cameo(member, face(n)) for n in range(1, 10)]
    before = app.recorder.max_notification_id()
    blank = api.client.post(f"/console/cameos/{cameo}/grants", data={"audience": "everyone", "csrf": csrf})
    assert blank.status_code == 400 and "consent covers" in blank.text  # never the widest consent by default
    with pytest.raises(InvalidInput, match="at most 8 cameos"):  # the console's form, the API and the CLI alike
        app.request_generation(member, "all of us", cameo_ids=many)
    assert app.recorder.max_notification_id() == before
    app.change_role(OPERATOR, member, "member", grant=False, reason="suspended")  # no role left
    assert api.client.get("/console/verify").status_code == 403  # as POST /verify refuses them


def test_a_form_posted_after_the_session_ended_comes_back_to_its_page(api: Api) -> None:
    app = api.system.app
    cameo = app.register_cameo(app.person_by_handle("member").id, face())
    api.client.cookies.set("provenance_session", "an ended session")
    posted = api.client.post(
        f"/console/cameos/{cameo}/erase",
        data={"reason": "gone"},
        headers={"Referer": "http://testserver/console/cameos"},
        follow_redirects=False,
    )
    assert posted.headers["location"] == "/console/sign-in?next=/console/cameos"  # a page, not the form's action
    api.client.cookies.clear()
    for _ in range(6):
        refused = api.client.post("/console/sign-in", data={"handle": "member", "password": "wrong password!"})
    assert refused.status_code == 429 and "retry-after" in refused.headers
