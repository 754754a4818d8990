"""The read models the system keeps, and the store that holds them."""

from __future__ import annotations

from projections.audit import AuditProjection
from projections.consent import ConsentProjection
from projections.database import SQLITE_TABLES_READY
from projections.feed import FeedProjection
from projections.framework import Projection, ProjectionStore
from projections.lineage import LineageProjection
from projections.takedowns import TakedownProjection


def all_projections() -> list[Projection]:
    return [FeedProjection(), LineageProjection(), ConsentProjection(), AuditProjection(), TakedownProjection()]


def open_store(url: str) -> ProjectionStore:
    """The store of every read model, its tables created; on SQLite marked as complete for readers."""
    store = ProjectionStore(url, all_projections())
    if store.engine.dialect.name == "sqlite":
        with store.engine.connect() as conn:
            if conn.exec_driver_sql("PRAGMA user_version").scalar() != SQLITE_TABLES_READY:
                conn.exec_driver_sql(f"PRAGMA user_version = {SQLITE_TABLES_READY}")
                conn.commit()
    return store
