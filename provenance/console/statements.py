"""Statements of reasons in the EU DSA Transparency Database's statement format.

Each takedown case, and each video blocked by a person's review decision, becomes one statement: the fields
the database's API takes (decision_visibility, decision_ground, category, content_type, automated_detection,
automated_decision, source_type, decision_facts, dates), filled from what the case records.

The category comes from structured data only: a takedown's reason code (matched whole against `REASON_CODES`)
or, for a video blocked by moderation, the label of the classifier that flagged it; never from a statement or a
handle. Free text keeps to the database's limits: `decision_facts` holds the full statement (cut at 5,000
characters), each `*_explanation` at most 2,000 and each `*_ground` at most 500, cut between words with "…".
"""

from __future__ import annotations

import unicodedata
from typing import Any

PLATFORM_NAME = "provenance"

# The Transparency Database's limits on a statement's free-text fields, in characters: its API refuses longer.
MAX_FACTS = 5000
MAX_EXPLANATION = 2000
MAX_GROUND = 500
ELLIPSIS = "\u2026"

OTHER = "STATEMENT_CATEGORY_SCOPE_OF_PLATFORM_SERVICE"
"""The database's catch-all: content outside what the service allows, in no more specific category."""
NON_CONSENSUAL = "STATEMENT_CATEGORY_NON_CONSENSUAL_BEHAVIOUR"

REASON_CODES = {
    # the codes the platform records itself: a cameo's owner, and consent ending (revoked, narrowed, expired,
    # lost, a cameo held, rejected or erased)
    "likeness_owner_request": NON_CONSENSUAL,
    "consent_revoked": NON_CONSENSUAL,
    "consent_narrowed": NON_CONSENSUAL,
    "consent_expired": NON_CONSENSUAL,
    "consent_lost": NON_CONSENSUAL,
    "cameo_held": NON_CONSENSUAL,
    "cameo_rejected": NON_CONSENSUAL,
    "cameo_erased": NON_CONSENSUAL,
    # codes for trust and safety's takedowns
    "consent": NON_CONSENSUAL,
    "likeness": NON_CONSENSUAL,
    "impersonation": NON_CONSENSUAL,
    "violence": "STATEMENT_CATEGORY_VIOLENCE",
    "gore": "STATEMENT_CATEGORY_VIOLENCE",
    "spam": "STATEMENT_CATEGORY_SCAMS_AND_FRAUD",
    "fraud": "STATEMENT_CATEGORY_SCAMS_AND_FRAUD",
    "copyright": "STATEMENT_CATEGORY_INTELLECTUAL_PROPERTY_INFRINGEMENTS",
    "minors": "STATEMENT_CATEGORY_PROTECTION_OF_MINORS",
    "hate": "STATEMENT_CATEGORY_ILLEGAL_OR_HARMFUL_SPEECH",
    "privacy": "STATEMENT_CATEGORY_DATA_PROTECTION_AND_PRIVACY_VIOLATIONS",
    # the moderation policy's categories (moderation/policies/*.yaml), a classifier's label
    "sexual_content": "STATEMENT_CATEGORY_PORNOGRAPHY_OR_SEXUALIZED_CONTENT",
    "violence_gore": "STATEMENT_CATEGORY_VIOLENCE",
    "self_harm": "STATEMENT_CATEGORY_SELF_HARM",
    "hate_symbols": "STATEMENT_CATEGORY_ILLEGAL_OR_HARMFUL_SPEECH",
    "minors_unsafe": "STATEMENT_CATEGORY_PROTECTION_OF_MINORS",
}
"""A reason code (or a classifier's label) -> its DSA category, matched whole: an unknown code is `OTHER`."""

_GATES = {"consent": NON_CONSENSUAL}
"""A video blocked at a gate that is not moderation: the consent gate blocks it when consent ended (a remix blocked
because the video it remixes came down takes the category of the takedown its cascade began with)."""

_SEVERITY = {"block": 2, "review": 1}

_SOURCES = {
    "notice": "SOURCE_ARTICLE_16",
    "cameo_owner": "SOURCE_ARTICLE_16",
    "trusted_flagger": "SOURCE_TRUSTED_NOTIFIER",
}


def category_of(reason_code: str) -> str:
    """The DSA category of a reason code, matched whole (case, spaces and hyphens aside); `OTHER` if unknown.

    Never a substring: a code, a statement or a handle that merely contains a word says nothing of the category.
    """
    key = "_".join(reason_code.strip().lower().replace("-", " ").split())
    return REASON_CODES.get(key, OTHER)


def category_of_decision(moderation: dict[str, Any] | None) -> str:
    """The DSA category of a moderation decision: that of the classifier that weighed most in it (a `block`
    over a `review`, then the score furthest over its threshold); `OTHER` when none flagged it."""
    flagged = [
        c for c in (moderation or {}).get("classifiers") or [] if isinstance(c, dict) and c.get("outcome") in _SEVERITY
    ]
    if not flagged:
        return OTHER

    def weight(c: dict[str, Any]) -> tuple[int, float]:
        try:
            margin = float(c.get("score") or 0) - float(c.get("threshold") or 0)
        except (TypeError, ValueError):
            margin = 0.0
        return _SEVERITY[str(c.get("outcome"))], margin

    worst = max(flagged, key=weight)
    if worst.get("name") == "likeness":  # a face matching a protected person or a cameo without consent
        return NON_CONSENSUAL
    return category_of(str(worst.get("label") or ""))


def cut(text: str, limit: int) -> str:
    """`text` in at most `limit` characters: whole if it fits, else cut at a word boundary (or, in one long
    word, before a combining mark's base character) and ended with an ellipsis."""
    if len(text) <= limit:
        return text
    room = limit - len(ELLIPSIS)
    head = text[:room]
    if not text[room].isspace():
        boundary = max(head.rfind(" "), head.rfind("\n"), head.rfind("\t"))
        if boundary > room // 2:
            head = head[:boundary]
        else:
            end = room
            while end > 0 and unicodedata.combining(text[end]):
                end -= 1  # keep a letter with its accents
            head = text[:end]
    return head.rstrip() + ELLIPSIS


def _day(value: Any) -> str | None:
    return str(value)[:10] if value else None


def takedown_statement(case: dict[str, Any], video: dict[str, Any]) -> dict[str, Any]:
    """A takedown case (a row of the takedowns read model) as a DSA statement of reasons."""
    illegal = bool(case.get("legal_ground"))
    automated = bool(case.get("automated"))
    reasons = str(case.get("statement_of_reasons") or "")
    statement: dict[str, Any] = {
        "decision_visibility": ["DECISION_VISIBILITY_CONTENT_REMOVED"],
        "decision_ground": "DECISION_GROUND_ILLEGAL_CONTENT" if illegal else "DECISION_GROUND_INCOMPATIBLE_CONTENT",
        "category": category_of(str(case.get("reason_code") or "")),
        "content_type": ["CONTENT_TYPE_SYNTHETIC_MEDIA", "CONTENT_TYPE_VIDEO"],
        "automated_detection": "Yes" if automated else "No",
        "automated_decision": "AUTOMATED_DECISION_FULLY" if automated else "AUTOMATED_DECISION_NOT_AUTOMATED",
        "source_type": _SOURCES.get(str(case.get("source")), "SOURCE_VOLUNTARY"),
        "decision_facts": cut(reasons, MAX_FACTS),
        "application_date": _day(case.get("issued_at")),
        "content_date": _day(video.get("requested_at")),
        "puid": f"{PLATFORM_NAME}:{video.get('video_id')}:{case.get('case_id')}",
        "territorial_scope": [],
    }
    if illegal:
        statement["illegal_content_legal_ground"] = cut(str(case.get("legal_ground")), MAX_GROUND)
        statement["illegal_content_explanation"] = cut(reasons, MAX_EXPLANATION)
    else:
        ground = str(case.get("policy_clause") or case.get("reason_code") or "")
        statement["incompatible_content_ground"] = cut(ground, MAX_GROUND)
        statement["incompatible_content_explanation"] = cut(reasons, MAX_EXPLANATION)
    if case.get("status") == "reinstated":
        statement["end_date_visibility_restriction"] = _day(case.get("resolved_at"))
    return statement


def block_statement(video: dict[str, Any], origin: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """A video blocked before publication (a gate or a person's review decision) as a DSA statement.

    `origin`: for a remix blocked because the video it remixes came down, the takedown that began the cascade
    (`ReadModels.block_origin`): the remix is blocked for that takedown's reason, not for a consent that ended.
    """
    if video.get("state") != "blocked":
        return None
    moderation = video.get("moderation") or {}
    reasons = list(video.get("block_reasons") or moderation.get("reasons") or [])
    reviewed = any(str(r).startswith("reviewed by ") for r in reasons)
    gate = str(video.get("block_gate") or "moderation")
    facts = "; ".join(str(r) for r in reasons) or f"blocked at the {gate} gate"
    if gate == "moderation":
        category = category_of_decision(moderation)
    elif origin is not None:
        category = category_of(str(origin.get("reason_code") or ""))
    else:
        category = _GATES.get(gate, OTHER)
    return {
        "decision_visibility": ["DECISION_VISIBILITY_CONTENT_DISABLED"],
        "decision_ground": "DECISION_GROUND_INCOMPATIBLE_CONTENT",
        "incompatible_content_ground": cut(gate, MAX_GROUND),
        "incompatible_content_explanation": cut(facts, MAX_EXPLANATION),
        "category": category,
        "content_type": ["CONTENT_TYPE_SYNTHETIC_MEDIA", "CONTENT_TYPE_VIDEO"],
        "automated_detection": "Yes",
        "automated_decision": "AUTOMATED_DECISION_PARTIALLY" if reviewed else "AUTOMATED_DECISION_FULLY",
        "source_type": "SOURCE_VOLUNTARY",
        "decision_facts": cut(facts, MAX_FACTS),
        "application_date": _day(video.get("updated_at")),
        "content_date": _day(video.get("requested_at")),
        "puid": f"{PLATFORM_NAME}:{video.get('video_id')}:block",
        "territorial_scope": [],
    }
