"""Statements of reasons in the EU DSA Transparency Database's statement format.

Each takedown case, and each video blocked by a person's review decision, becomes one statement: the fields
the database's API takes (decision_visibility, decision_ground, category, content_type, automated_detection,
automated_decision, source_type, decision_facts, dates), filled from what the case records.
"""

from __future__ import annotations

from typing import Any

PLATFORM_NAME = "provenance"

_CATEGORIES = {
    "consent": "STATEMENT_CATEGORY_NON_CONSENSUAL_BEHAVIOUR",
    "likeness": "STATEMENT_CATEGORY_NON_CONSENSUAL_BEHAVIOUR",
    "impersonation": "STATEMENT_CATEGORY_NON_CONSENSUAL_BEHAVIOUR",
    "violence": "STATEMENT_CATEGORY_VIOLENCE",
    "gore": "STATEMENT_CATEGORY_VIOLENCE",
    "spam": "STATEMENT_CATEGORY_SCAMS_AND_FRAUD",
    "fraud": "STATEMENT_CATEGORY_SCAMS_AND_FRAUD",
    "copyright": "STATEMENT_CATEGORY_INTELLECTUAL_PROPERTY_INFRINGEMENTS",
    "minor": "STATEMENT_CATEGORY_PROTECTION_OF_MINORS",
    "hate": "STATEMENT_CATEGORY_ILLEGAL_OR_HARMFUL_SPEECH",
    "privacy": "STATEMENT_CATEGORY_DATA_PROTECTION_AND_PRIVACY_VIOLATIONS",
}

_SOURCES = {
    "notice": "SOURCE_ARTICLE_16",
    "cameo_owner": "SOURCE_ARTICLE_16",
    "trusted_flagger": "SOURCE_TRUSTED_NOTIFIER",
}


def category_of(reason: str) -> str:
    """The DSA category a reason code falls in (by the words it contains); the scope of the service otherwise."""
    words = reason.lower()
    for key, category in _CATEGORIES.items():
        if key in words:
            return category
    return "STATEMENT_CATEGORY_SCOPE_OF_PLATFORM_SERVICE"


def _day(value: Any) -> str | None:
    return str(value)[:10] if value else None


def takedown_statement(case: dict[str, Any], video: dict[str, Any]) -> dict[str, Any]:
    """A takedown case (a row of the takedowns read model) as a DSA statement of reasons."""
    illegal = bool(case.get("legal_ground"))
    automated = bool(case.get("automated"))
    statement: dict[str, Any] = {
        "decision_visibility": ["DECISION_VISIBILITY_CONTENT_REMOVED"],
        "decision_ground": "DECISION_GROUND_ILLEGAL_CONTENT" if illegal else "DECISION_GROUND_INCOMPATIBLE_CONTENT",
        "category": category_of(str(case.get("reason_code", ""))),
        "content_type": ["CONTENT_TYPE_SYNTHETIC_MEDIA", "CONTENT_TYPE_VIDEO"],
        "automated_detection": "Yes" if automated else "No",
        "automated_decision": "AUTOMATED_DECISION_FULLY" if automated else "AUTOMATED_DECISION_NOT_AUTOMATED",
        "source_type": _SOURCES.get(str(case.get("source")), "SOURCE_VOLUNTARY"),
        "decision_facts": str(case.get("statement_of_reasons", "")),
        "application_date": _day(case.get("issued_at")),
        "content_date": _day(video.get("requested_at")),
        "puid": f"{PLATFORM_NAME}:{video.get('video_id')}:{case.get('case_id')}",
        "territorial_scope": [],
    }
    if illegal:
        statement["illegal_content_legal_ground"] = case.get("legal_ground")
        statement["illegal_content_explanation"] = case.get("statement_of_reasons")
    else:
        statement["incompatible_content_ground"] = case.get("policy_clause") or case.get("reason_code")
        statement["incompatible_content_explanation"] = case.get("statement_of_reasons")
    if case.get("status") == "reinstated":
        statement["end_date_visibility_restriction"] = _day(case.get("resolved_at"))
    return statement


def block_statement(video: dict[str, Any]) -> dict[str, Any] | None:
    """A video blocked before publication (a gate or a person's review decision) as a DSA statement."""
    if video.get("state") != "blocked":
        return None
    moderation = video.get("moderation") or {}
    reasons = list(video.get("block_reasons") or moderation.get("reasons") or [])
    reviewed = any(str(r).startswith("reviewed by ") for r in reasons)
    facts = "; ".join(str(r) for r in reasons) or "blocked at the " + str(video.get("block_gate") or "gate")
    return {
        "decision_visibility": ["DECISION_VISIBILITY_CONTENT_DISABLED"],
        "decision_ground": "DECISION_GROUND_INCOMPATIBLE_CONTENT",
        "incompatible_content_ground": str(video.get("block_gate") or "moderation"),
        "incompatible_content_explanation": facts,
        "category": category_of(facts),
        "content_type": ["CONTENT_TYPE_SYNTHETIC_MEDIA", "CONTENT_TYPE_VIDEO"],
        "automated_detection": "Yes",
        "automated_decision": "AUTOMATED_DECISION_PARTIALLY" if reviewed else "AUTOMATED_DECISION_FULLY",
        "source_type": "SOURCE_VOLUNTARY",
        "decision_facts": facts,
        "application_date": _day(video.get("updated_at")),
        "content_date": _day(video.get("requested_at")),
        "puid": f"{PLATFORM_NAME}:{video.get('video_id')}:block",
        "territorial_scope": [],
    }
