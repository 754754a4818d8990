"""Ids derived from command ids, so that a retried command names the same things and records nothing twice."""

from __future__ import annotations

import hashlib
from uuid import NAMESPACE_URL, UUID, uuid4, uuid5

_NAMESPACE = uuid5(NAMESPACE_URL, "provenance:ids").bytes
_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}


def derived_id(kind: str, *parts: object) -> str:
    """A stable id from a command id (and whatever else identifies the thing): `str(uuid5(...))` of them.

    Written out from the SHA-1 digest as `uuid5` builds it (the version in the 13th digit, the variant in the
    top bits of the 17th), without the `UUID` object: a revocation cascade names thousands of cases.
    """
    digest = hashlib.sha1(_NAMESPACE + ":".join([kind, *map(str, parts)]).encode()).hexdigest()
    return f"{digest[:8]}-{digest[8:12]}-5{digest[13:16]}-{_VARIANT[digest[16]]}{digest[17:20]}-{digest[20:32]}"


def canonical_id(text: str) -> str:
    """An id we derived (a grant's, a case's) as it is stored, however the caller spelt it (case, braces,
    spaces); anything that is not a UUID as it was given, to be found nowhere."""
    try:
        return str(UUID(text.strip()))
    except (ValueError, AttributeError):
        return text


def new_command_id() -> str:
    return str(uuid4())
