"""The consent watch: what ends consent without a command on the cameo is noticed here.

Two things end a grant's coverage without anyone touching the cameo: its expiry time passing, and a change of
the follow graph (an unfollow ends a `mutuals` grant's reach). The watch follows the log like a gate worker
(an `Unfollowed` event makes the write side re-check every cameo of both people) and sweeps the consent read
model for grants whose expiry passed (the write side records `ConsentExpired` once and takes down what only
that grant covered). Both sides are idempotent, so a crash or a second run records nothing twice.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

import sqlalchemy as sa

from projections.framework import read_checkpoint, table_of, write_checkpoint
from projections.tables import ConsentCameo, ConsentGrant
from provenance.application import ProvenanceApp
from provenance.freshness import CLOCK_SOURCE, EXPIRY_TIMER, LOG_SOURCE
from provenance.gates import WorkerConsumer
from schemas import events as e
from schemas.envelope import EventEnvelope

log = logging.getLogger(__name__)

NAME = "worker:consent"
_MARGIN = timedelta(days=1)
"""How far back each sweep looks again: a grant projected late, or stored in another UTC offset, is still seen
(the write side records each expiry once)."""


class ConsentWatch:
    def __init__(self, app: ProvenanceApp, engine: sa.Engine) -> None:
        self.app = app
        self.engine = engine

    def consumer(self) -> WorkerConsumer:
        """The watch as a consumer of the log, with its position stored like a gate worker's."""
        return WorkerConsumer(NAME, self.engine, self.handle_one)

    def handle_one(self, event: EventEnvelope) -> None:
        if event.event_type != "Unfollowed":
            return
        follower, followed = event.stream_id, str(event.payload["person_id"])
        because = f"Person {follower} stopped following person {followed}: they are no longer mutuals."
        cause = e.EventRef(event_id=event.event_id, stream_id=event.stream_id)
        for cameo_id in self._cameos_of(follower, followed):
            command_id = f"unfollow:{event.event_id}:{cameo_id}"
            outcome = self.app.recheck_consent(cameo_id, because=because, cause=cause, command_id=command_id)
            if outcome.takedowns or outcome.blocked:
                log.info("unfollow %s: %d takedown(s)", event.event_id, len(outcome.takedowns))

    # --- the expiry timer ----------------------------------------------------------------------------------

    def sweep_expiries(self, now: datetime, projected: int | None = None) -> int:
        """Record every expiry that has passed since the last sweep; returns how many grants were looked at.

        `projected`: how far the log had been projected before the sweep, noted for `freshness`.
        """
        grants = table_of(ConsentGrant)
        with self.engine.connect() as conn:
            last = read_checkpoint(conn, EXPIRY_TIMER, CLOCK_SOURCE, 0)
            since = datetime.fromtimestamp(last / 1e6, now.tzinfo) - _MARGIN if last is not None else None
            query = sa.select(grants.c.cameo_id, grants.c.grant_id).where(
                grants.c.expires_at.is_not(None), grants.c.expires_at <= now, grants.c.revoked_at.is_(None)
            )
            if since is not None:
                query = query.where(grants.c.expires_at > since)
            due = conn.execute(query).all()
        for cameo_id, grant_id in due:
            self.app.expire_consent(cameo_id, grant_id)
        with self.engine.begin() as conn:
            write_checkpoint(conn, EXPIRY_TIMER, CLOCK_SOURCE, 0, int(now.timestamp() * 1e6))
            if projected is not None:
                write_checkpoint(conn, EXPIRY_TIMER, LOG_SOURCE, 0, projected)
        return len(due)

    def _cameos_of(self, *owners: str) -> list[str]:
        cameos = table_of(ConsentCameo)
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(cameos.c.cameo_id).where(cameos.c.owner_id.in_(owners), cameos.c.erased_at.is_(None))
            )
            return [row[0] for row in rows]
