"""Commands on people: registration and the follow graph (which decides `mutuals` consent)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from uuid import UUID

from kernel.errors import InvalidInput, NotPermitted, RuleViolation, quoted
from provenance.application.service import OPERATOR, SYSTEM, Service
from provenance.domain.ids import new_command_id
from provenance.domain.payloads import on_record
from provenance.domain.person import Person, handle_skeleton, person_id_for
from schemas.catalogue import InvalidEvent

HANDLE = re.compile(r"[a-z0-9._-]+")
"""What a handle is once folded to its skeleton (`handle_skeleton`): Latin letters and digits only, so that no
letter of another script, no invisible filler and no dotless i can make a handle that reads as another's."""


class PeopleCommands(Service):
    def register_person(
        self,
        handle: str,
        display_name: str = "",
        roles: Sequence[str] = ("member",),
        *,
        command_id: str | None = None,
    ) -> UUID:
        command_id = command_id or new_command_id()
        if handle != handle.strip() or not HANDLE.fullmatch(handle_skeleton(handle)):  # as given, spaces and all
            raise InvalidInput(f"handle {quoted(handle)} must be ASCII letters, digits, '_', '-' or '.'")
        person_id = person_id_for(handle)

        def run() -> UUID:
            if self.exists(person_id):
                if self.person(person_id).handled(command_id):
                    return person_id
                raise RuleViolation(f"handle {handle!r} is already taken")
            try:
                person = Person.register(
                    handle, display_name or handle, list(roles), actor=SYSTEM, command_id=command_id
                )
            except InvalidEvent as exc:
                raise InvalidInput(str(exc)) from exc
            self.save(person)
            return person_id

        return self._retrying(run)

    def change_role(
        self,
        actor: UUID | str,
        person_id: UUID,
        role: str,
        *,
        grant: bool,
        reason: str = "",
        command_id: str | None = None,
    ) -> bool:
        """An administrator grants or revokes a role (`actor` OPERATOR: the operator on the server machine).

        Returns False when the person already had (or lacked) the role: nothing is recorded twice.
        """
        command_id = command_id or new_command_id()
        if str(actor) != OPERATOR and not self.person(actor).is_administrator:
            raise NotPermitted("only an administrator grants or revokes roles")
        if not grant:
            on_record(reason, "revoking a role's reason", 2000)

        def run() -> bool:
            person = self.person(person_id)
            if grant:
                changed = person.grant_role(role, actor=str(actor), command_id=command_id)
            else:
                changed = person.revoke_role(role, reason, actor=str(actor), command_id=command_id)
            if changed:
                self.save(person)
            return changed

        return self._retrying(run)

    def follow(self, actor: UUID, whom: UUID, *, command_id: str | None = None) -> None:
        self._follow(actor, whom, True, command_id)

    def unfollow(self, actor: UUID, whom: UUID, *, command_id: str | None = None) -> None:
        self._follow(actor, whom, False, command_id)

    def _follow(self, actor: UUID, whom: UUID, start: bool, command_id: str | None) -> None:
        command_id = command_id or new_command_id()
        if actor == whom:
            raise InvalidInput("a person cannot follow themselves")

        def run() -> None:
            person = self.person(actor)
            self.person(whom)
            if person.follows(whom) == start and not person.handled(command_id):
                return
            (person.follow if start else person.unfollow)(whom, command_id=command_id)
            self.save(person)

        self._retrying(run)
