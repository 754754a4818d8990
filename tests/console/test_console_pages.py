"""The console's pages in-process: sessions and CSRF, access, statements of reasons, confirmations."""

from __future__ import annotations

import re
from typing import Any

import pytest

from kernel.errors import InvalidInput
from provenance.api.security import SESSION_COOKIE
from provenance.console.statements import block_statement, category_of, takedown_statement
from tests.api.conftest import PASSWORD, Api
from tests.core.support import face, pass_gates, publish_new


def signed_in(api: Api, handle: str) -> str:
    """Signs the test client in through the form; returns the page's CSRF token."""
    response = api.client.post("/console/sign-in", data={"handle": handle, "password": PASSWORD})
    assert response.status_code == 200, response.text  # followed the redirect to the feed
    marker = 'name="csrf" value="'
    text = response.text
    return text[text.index(marker) + len(marker) :].split('"', 1)[0]


def granted_and_signed_in(api: Api) -> tuple[Any, Any, str, str]:
    """The member, a cameo of theirs granted to everyone, the grant, and the CSRF token of their session."""
    app = api.system.app
    member = app.person_by_handle("member").id
    cameo = app.register_cameo(member, face())
    return member, cameo, app.grant_consent(member, cameo, "everyone"), signed_in(api, "member")


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
    _, cameo, grant, csrf = granted_and_signed_in(api)
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
    member, cameo, grant, csrf = granted_and_signed_in(api)
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


# The Transparency Database's limits on a statement's fields (its API refuses a longer one with a 422).
DSA_LIMITS = {
    "decision_facts": 5000,
    "illegal_content_explanation": 2000,
    "incompatible_content_explanation": 2000,
    "illegal_content_legal_ground": 500,
    "incompatible_content_ground": 500,
}


def assert_within_dsa_limits(statement: dict[str, Any]) -> None:
    for field, limit in DSA_LIMITS.items():
        if field in statement:
            assert isinstance(statement[field], str) and 0 < len(statement[field]) <= limit, (
                field,
                len(statement[field]),
            )
    for field in ("application_date", "content_date", "end_date_visibility_restriction"):
        if statement.get(field) is not None:
            assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", statement[field]), (field, statement[field])


def test_every_exported_statement_keeps_to_the_databases_field_limits(api: Api) -> None:
    app = api.system.app
    safety = app.person_by_handle("trust-and-safety").id
    member = app.person_by_handle("member").id
    words = ("a long statement of reasons " * 200)[:5000]  # as long as the API and console allow
    one_word = "é" * 5000  # no word boundary to cut at
    exported: dict[str, list[str]] = {}  # video -> case ids ("block" for a block)

    plain = publish_new(app, member, "plain")
    exported[str(plain)] = [
        r.case_id for r in app.take_down(plain, safety, reason_code="spam", statement_of_reasons=words)
    ]
    parent = publish_new(app, member, "parent")
    child = publish_new(app, member, "child", remix_of=parent)
    cases = app.take_down(parent, safety, reason_code="x", statement_of_reasons=one_word, legal_ground="g" * 500)
    for record in cases:  # the root's case with a legal ground, and the remix's cascade case
        exported.setdefault(record.video_id, []).append(record.case_id)
    assert str(child) in exported

    held = app.request_generation(member, "held")
    pass_gates(app, held, "review")
    app.decide_review(held, safety, "block", words)  # "reviewed by trust-and-safety: " goes before it
    exported[str(held)] = ["block"]

    alice, bob = app.register_person("alice"), app.register_person("bob")
    cameo = app.register_cameo(alice, face())
    grant = app.grant_consent(alice, cameo, "everyone")
    shown = publish_new(app, bob, "with alice", cameo_ids=[cameo])
    in_flight = app.request_generation(bob, "alice again", cameo_ids=[cameo])
    outcome = app.revoke_consent(alice, cameo, grant, ("no longer " * 300)[:2000])
    for record in outcome.takedowns:
        exported.setdefault(record.video_id, []).append(record.case_id)
    assert str(shown) in exported and outcome.blocked == [str(in_flight)]
    exported[str(in_flight)] = ["block"]

    signed_in(api, "auditor")
    for video, case_ids in exported.items():
        for case_id in case_ids:
            response = api.client.get(f"/console/videos/{video}/statements/{case_id}?format=json")
            assert response.status_code == 200, response.text
            statement = response.json()
            assert_within_dsa_limits(statement)
            explanation = statement.get("illegal_content_explanation") or statement["incompatible_content_explanation"]
            facts = statement["decision_facts"]
            if len(explanation) == 2000 or len(facts) == 5000:  # cut: it says so, and what is kept is the start
                assert (explanation + facts).count("\u2026") >= 1
            assert explanation.rstrip("\u2026").rstrip() in facts
            if case_id == "block":
                assert app.video(video).block_reasons[0].startswith(facts.rstrip("\u2026"))
    plain_case = api.client.get(f"/console/videos/{plain}/statements/{exported[str(plain)][0]}?format=json").json()
    assert plain_case["decision_facts"] == words  # the whole statement, it fits
    explanation = plain_case["incompatible_content_explanation"]
    assert explanation.endswith("\u2026") and words[len(explanation) - 1] == " "  # cut between two words
    assert words.startswith(explanation[:-1])


def test_the_category_follows_structured_data_not_free_text() -> None:
    other = "STATEMENT_CATEGORY_SCOPE_OF_PLATFORM_SERVICE"
    base = {"video_id": "v", "state": "blocked", "block_gate": "moderation"}
    for reason in (
        "reviewed by chateau: low-effort repost",  # "hate" inside the handle
        "reviewed by tess: not violence, but off-topic spam-free filler",
        "reviewed by tess: the creator is no minor issue",
    ):
        blocked = block_statement({**base, "block_reasons": [reason]})
        assert blocked is not None and blocked["category"] == other, reason
    case = {"case_id": "c", "statement_of_reasons": "hate, violence, copyright", "issued_at": "2026-12-01"}
    for code, category in (
        ("whatever_else", other),
        ("not_copyrighted", other),
        ("terminology", other),
        ("copyright", "STATEMENT_CATEGORY_INTELLECTUAL_PROPERTY_INFRINGEMENTS"),
        ("violence", "STATEMENT_CATEGORY_VIOLENCE"),
        ("consent_revoked", "STATEMENT_CATEGORY_NON_CONSENSUAL_BEHAVIOUR"),
        ("likeness_owner_request", "STATEMENT_CATEGORY_NON_CONSENSUAL_BEHAVIOUR"),
        ("cameo_erased", "STATEMENT_CATEGORY_NON_CONSENSUAL_BEHAVIOUR"),
    ):
        assert takedown_statement({**case, "reason_code": code}, {"video_id": "v"})["category"] == category, code
    assert category_of("not_copyrighted") == other

    def classifier(name: str, label: str, outcome: str, score: float) -> dict[str, Any]:
        return {"name": name, "label": label, "outcome": outcome, "score": score, "threshold": 0.5}

    held = {
        "verdict": "block",
        "classifiers": [
            classifier("policy.prompts", "violence_gore", "allow", 0.2),
            classifier("policy.prompts", "sexual_content", "review", 0.48),
        ],
        "reasons": ["reviewed by chateau: hate and violence"],
    }
    reviewed = {**base, "moderation": held, "block_reasons": held["reasons"]}
    by_review = block_statement(reviewed)  # the held classifier's label, not the reviewer's words or handle
    assert by_review is not None and by_review["category"] == "STATEMENT_CATEGORY_PORNOGRAPHY_OR_SEXUALIZED_CONTENT"
    blocked = {
        "verdict": "block",
        "classifiers": [
            classifier("policy.prompts", "minors_unsafe", "review", 0.49),
            classifier("policy.head", "hate_symbols", "block", 0.9),
            classifier("likeness", "cameo:c1", "block", 0.7),
        ],
        "reasons": ["block: Hate symbols (trained head)"],
    }
    by_classifier = block_statement({**base, "moderation": blocked, "block_reasons": blocked["reasons"]})
    assert by_classifier is not None and by_classifier["category"] == "STATEMENT_CATEGORY_ILLEGAL_OR_HARMFUL_SPEECH"
    likeness = {**blocked, "classifiers": [classifier("likeness", "protected:someone", "block", 0.8)]}
    by_likeness = block_statement({**base, "moderation": likeness})
    assert by_likeness is not None and by_likeness["category"] == "STATEMENT_CATEGORY_NON_CONSENSUAL_BEHAVIOUR"
    consent = block_statement({**base, "block_gate": "consent", "block_reasons": ["Consent for cameo c was revoked"]})
    assert consent is not None and consent["category"] == "STATEMENT_CATEGORY_NON_CONSENSUAL_BEHAVIOUR"


def test_read_pages_need_no_script(api: Api) -> None:
    app = api.system.app
    video = publish_new(app, app.person_by_handle("member").id, "a quiet clip")
    signed_in(api, "member")
    feed = api.client.get("/console").text
    assert "a quiet clip" in feed and "AI-generated" in feed and f"/console/videos/{video}" in feed
    page = api.client.get(f"/console/videos/{video}").text
    assert 'State: <strong id="state">published</strong>' in page
    reordered = publish_new(app, app.person_by_handle("member").id, "a clip \u202egnp.exe")  # an override
    page = api.client.get(f"/console/videos/{reordered}").text
    assert "\u202e" not in page and "a clip \\u202egnp.exe" in page  # written out, not obeyed


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


def test_the_verify_page_says_when_the_frames_could_not_be_read_for_watermarks(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    from provenance.credentials import verify

    unread = verify.VerificationReport(
        path="upload.mp4",
        state="Trusted",
        failures=(),
        reason="manifest read",
        container="bmff",
        watermark_checked=True,
        watermark_error="x.mp4 has 5 video streams, too many to verify",
    )
    monkeypatch.setattr(verify, "verify_file", lambda *_: unread)
    csrf = signed_in(api, "member")
    files = {"file": ("clip.mp4", b"\x00" * 64, "video/mp4")}
    shown = api.client.post("/console/verify", data={"csrf": csrf}, files=files)
    assert shown.status_code == 200, shown.text
    assert 'id="watermark-error"' in shown.text and "has 5 video streams" in shown.text


def test_an_upload_to_the_console_without_a_live_session_is_refused_before_it_is_read(api: Api) -> None:
    """The console's forms are read before the page knows who posted them: without a live session, the two
    upload forms take no file, so nobody can have the service spool hundreds of MiB for a sign-in redirect."""
    clip = {"file": ("clip.mp4", b"\x00" * (2 << 20), "video/mp4")}
    face_file = {"file": ("face.png", b"\x00" * (1 << 20), "image/png")}
    for path, files in (("/console/verify", clip), ("/console/cameos", face_file)):
        anonymous = api.client.post(path, data={"csrf": "x"}, files=files, follow_redirects=False)
        assert anonymous.status_code == 413, (path, anonymous.status_code)
        api.client.cookies.set(SESSION_COOKIE, "made-up")
        forged = api.client.post(path, data={"csrf": "x"}, files=files, follow_redirects=False)
        assert forged.status_code == 413, (path, forged.status_code)
        api.client.cookies.clear()
    signed_in(api, "member")
    assert api.client.post("/console/verify", data={"csrf": "x"}, files=clip).status_code != 413


def test_a_videos_page_shows_a_bounded_remix_tree_nearest_first() -> None:
    """Each remix shown costs a query: a popular video's tree (three remixes of every remix, six levels: 1,092)
    is shown to `LINEAGE_SHOWN`, the nearest first, saying that there are more."""
    from provenance.console.pages import LINEAGE_SHOWN, _lineage

    class Remixes:
        asked = 0

        def children(self, video_id: str) -> list[str]:
            self.asked += 1
            return [f"{video_id}.{n}" for n in range(3)] if video_id.count(".") < 6 else []

        def ancestors(self, video_id: str) -> list[str]:
            return []

    reads = Remixes()
    lineage = _lineage(reads, "v")

    def shown(nodes: list[dict[str, Any]]) -> list[str]:
        return [n["video_id"] for n in nodes] + [v for n in nodes for v in shown(n["children"])]

    below = shown(lineage["below"])
    assert len(below) == LINEAGE_SHOWN and lineage["more_below"] and reads.asked <= LINEAGE_SHOWN + 1
    assert {"v.0", "v.2", "v.2.2", "v.2.2.2", "v.2.2.2.2"} <= set(below)  # whole levels before deeper ones
    small = _lineage(Remixes(), "v.0.0.0.0.0")
    assert shown(small["below"]) == ["v.0.0.0.0.0.0", "v.0.0.0.0.0.1", "v.0.0.0.0.0.2"] and not small["more_below"]
