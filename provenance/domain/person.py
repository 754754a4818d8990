"""People: the actors of the system, their roles, and who follows whom (consent to mutuals needs it)."""

from __future__ import annotations

import unicodedata
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from provenance.domain.payloads import payload as build
from provenance.domain.stream import EventStream
from schemas import events as e

PERSON_NAMESPACE = uuid5(NAMESPACE_URL, "provenance:person")


def person_id_for(handle: str) -> UUID:
    """People are addressed by handle; the stream id is derived from it, so no lookup table is needed.

    The id comes from the handle's skeleton (NFKC, case-folded, look-alike letters of other scripts mapped to
    Latin), so `Alice`, `alice` in full-width letters and `alice` with a Cyrillic a all name one person:
    a confusable handle is refused as taken, and a look-up finds the person whoever typed it how.
    """
    return uuid5(PERSON_NAMESPACE, handle_skeleton(handle))


# Letters of other scripts that look like Latin ones (a subset of Unicode's confusables, for handles).
_LOOKALIKES = str.maketrans(
    "аеорсухіјѕԁһԛԝӏɡοαρνκτιυхʏ",
    "aeopcyxijsdhqwlgoapvktiuxy",
)


def handle_skeleton(handle: str) -> str:
    return unicodedata.normalize("NFKC", handle).strip().casefold().translate(_LOOKALIKES)


class Person(EventStream):
    STREAM_TYPE = "person"

    def __init__(self) -> None:
        super().__init__()
        self.handle = ""
        self.display_name = ""
        self.roles: list[str] = []
        self.following: set[str] = set()

    @classmethod
    def register(
        cls, handle: str, display_name: str, roles: list[str], *, actor: str, command_id: str | None
    ) -> Person:
        payload = build(e.PersonRegistered, handle=handle, display_name=display_name, roles=roles)
        return cls._start(person_id_for(handle), "PersonRegistered", payload, actor=actor, command_id=command_id)

    @property
    def is_trust_and_safety(self) -> bool:
        return "trust_and_safety" in self.roles

    @property
    def is_administrator(self) -> bool:
        return "administrator" in self.roles

    def grant_role(self, role: str, *, actor: str, command_id: str | None) -> bool:
        if role in self.roles:
            return False
        return self._record("RoleGranted", build(e.RoleGranted, role=role), actor=actor, command_id=command_id)

    def revoke_role(self, role: str, reason: str, *, actor: str, command_id: str | None) -> bool:
        if role not in self.roles:
            return False
        payload = build(e.RoleRevoked, role=role, reason=reason)
        return self._record("RoleRevoked", payload, actor=actor, command_id=command_id)

    def follow(self, other: UUID, *, command_id: str | None) -> bool:
        return self._record("Followed", e.Followed(person_id=str(other)), actor=str(self.id), command_id=command_id)

    def unfollow(self, other: UUID, *, command_id: str | None) -> bool:
        return self._record("Unfollowed", e.Unfollowed(person_id=str(other)), actor=str(self.id), command_id=command_id)

    def follows(self, other: UUID | str) -> bool:
        return str(other) in self.following

    def _when_PersonRegistered(self, p: dict[str, Any], _: Any) -> None:
        self.handle = p["handle"]
        self.display_name = p["display_name"]
        self.roles = list(p["roles"])

    def _when_Followed(self, p: dict[str, Any], _: Any) -> None:
        self.following.add(p["person_id"])

    def _when_Unfollowed(self, p: dict[str, Any], _: Any) -> None:
        self.following.discard(p["person_id"])

    def _when_RoleGranted(self, p: dict[str, Any], _: Any) -> None:
        self.roles.append(p["role"])

    def _when_RoleRevoked(self, p: dict[str, Any], _: Any) -> None:
        self.roles.remove(p["role"])
