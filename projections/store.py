"""The read models the system keeps, and the store that holds them."""

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
