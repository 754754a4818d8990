"""Read models built from the event log: feed, lineage, consent registry, audit trail, takedowns."""

from __future__ import annotations

from projections.audit import AuditProjection
from projections.consent import ConsentProjection
from projections.feed import FeedProjection
from projections.framework import Projection, ProjectionStore
from projections.lineage import LineageProjection
from projections.takedowns import TakedownProjection


def all_projections() -> list[Projection]:
    return [FeedProjection(), LineageProjection(), ConsentProjection(), AuditProjection(), TakedownProjection()]


def open_store(url: str) -> ProjectionStore:
    return ProjectionStore(url, all_projections())


__all__ = ["Projection", "ProjectionStore", "all_projections", "open_store"]
