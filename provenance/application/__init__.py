"""The write side's service layer: every command of the domain, in small modules by area.

`ProvenanceApp` is one `eventsourcing` application made of the command handlers for people, cameos,
videos and takedowns; each handler module extends `Service` (loading, retries, the collaborators). The
rules themselves live in `provenance.domain` (aggregates, consent, the takedown cascade), where they can be
tested without a store. Build it through `provenance.bootstrap.System`, which hands it its collaborators.
"""

from __future__ import annotations

from provenance.application.cameos import CameoCommands, RevocationOutcome
from provenance.application.people import PeopleCommands
from provenance.application.service import SYSTEM
from provenance.application.takedowns import TakedownCommands
from provenance.application.videos import PublishOutcome, VideoCommands
from provenance.domain.cascade import TakedownRecord
from provenance.domain.ids import derived_id, new_command_id


class ProvenanceApp(PeopleCommands, CameoCommands, VideoCommands, TakedownCommands):
    """Commands for people, cameos and videos. Actors are person ids, or `system:<role>` for workers."""


__all__ = [
    "SYSTEM",
    "ProvenanceApp",
    "PublishOutcome",
    "RevocationOutcome",
    "TakedownRecord",
    "derived_id",
    "new_command_id",
]
