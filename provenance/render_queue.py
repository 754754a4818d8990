"""Requests waiting for a render in the distributed mode, served fairly between creators.

The generator role's consumer does not render in partition order (one creator's hundred requests would hold
everybody else's behind them): it adds each request to this queue, in the projections database, and the
role's render loop takes the next one by start-time fair queueing. Each creator has a virtual clock that a
request advances by its cost (pixels x frames); a request starts at the later of its creator's clock and
the queue's virtual time (the smallest start still queued), and the smallest start is served first. So a
creator with one request waits for at most one render of every other creator, a creator who asks for
bigger renders gets proportionally fewer of them, and time spent idle earns no credit.

A taken request carries a lease that its worker renews while it renders; a worker that dies lets it lapse
and another worker takes the request again. A request that has taken its worker down `max_attempts` times
is given up rather than taking every worker down in turn. Replicas share the queue: taking a request is one
conditional `UPDATE`, so two workers never render the same one at the same time.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from provenance.kafka.positions import creating_tables
from schemas.envelope import EventEnvelope

log = logging.getLogger(__name__)

_metadata = sa.MetaData()

queued = sa.Table(
    "render_queue",
    _metadata,
    sa.Column("video_id", sa.String(64), primary_key=True),
    sa.Column("creator_id", sa.String(64), nullable=False),
    sa.Column("cost", sa.Float, nullable=False),
    sa.Column("start_tag", sa.Float, nullable=False, index=True),
    sa.Column("added_at", sa.Float, nullable=False),
    sa.Column("event", sa.LargeBinary, nullable=False),
    sa.Column("worker", sa.String(200)),
    sa.Column("lease_until", sa.Float),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
)

creators = sa.Table(
    "render_creators",
    _metadata,
    sa.Column("creator_id", sa.String(64), primary_key=True),
    sa.Column("finish_tag", sa.Float, nullable=False),
)


def render_cost(parameters: dict[str, Any]) -> float:
    """What a request costs the renderer: pixels times frames."""
    return (
        float(parameters["width"])
        * float(parameters["height"])
        * float(parameters["fps"])
        * float(parameters["duration_s"])
    )


class _AlreadyQueued(Exception):
    pass


@dataclass(frozen=True)
class Claim:
    video_id: str
    creator_id: str
    event: EventEnvelope
    worker: str
    attempts: int
    """How many times the request has been taken, this time included."""


@dataclass(frozen=True)
class Waiting:
    video_id: str
    creator_id: str
    cost: float
    start_tag: float
    worker: str | None


class RenderQueue:
    def __init__(
        self,
        engine: Engine,
        *,
        lease_s: float = 60.0,
        max_attempts: int = 3,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.engine = engine
        self.lease_s = lease_s
        self.max_attempts = max_attempts
        self.clock = clock
        creating_tables(lambda: _metadata.create_all(engine))

    # --- adding --------------------------------------------------------------------------------------------

    def add(self, event: EventEnvelope) -> bool:
        """Queue a `GenerationRequested` event; False when its video is already queued (a redelivery)."""
        payload = event.payload
        creator_id = str(payload["creator_id"])
        cost = render_cost(payload["parameters"])
        try:
            with self.engine.begin() as conn:
                self._add(conn, event, creator_id, cost)
        except _AlreadyQueued:
            return False
        return True

    def _add(self, conn: Connection, event: EventEnvelope, creator_id: str, cost: float) -> None:
        if conn.execute(sa.select(queued.c.video_id).where(queued.c.video_id == event.stream_id)).first():
            raise _AlreadyQueued
        _insert_ignoring_duplicates(conn, creators, {"creator_id": creator_id, "finish_tag": 0.0})
        finish = conn.execute(
            sa.select(creators.c.finish_tag).where(creators.c.creator_id == creator_id).with_for_update()
        ).scalar_one()
        start = max(self._virtual_time(conn), finish)
        conn.execute(creators.update().where(creators.c.creator_id == creator_id).values(finish_tag=start + cost))
        inserted = _insert_ignoring_duplicates(
            conn,
            queued,
            {
                "video_id": event.stream_id,
                "creator_id": creator_id,
                "cost": cost,
                "start_tag": start,
                "added_at": self.clock(),
                "event": event.to_json(),
                "attempts": 0,
            },
        )
        if not inserted:  # another replica queued it between our check and our insert: undo the clock
            raise _AlreadyQueued

    @staticmethod
    def _virtual_time(conn: Connection) -> float:
        """The smallest start still queued (in service or waiting); when the queue is empty, the largest
        finish handed out, so nobody who was away comes back ahead of those who kept asking."""
        smallest = conn.execute(sa.select(sa.func.min(queued.c.start_tag))).scalar()
        if smallest is not None:
            return float(smallest)
        return float(conn.execute(sa.select(sa.func.max(creators.c.finish_tag))).scalar() or 0.0)

    # --- serving -------------------------------------------------------------------------------------------

    def claim(self, worker: str) -> Claim | None:
        """Take the request with the smallest start that nobody holds; None when there is none."""
        now = self.clock()
        free = sa.or_(queued.c.lease_until.is_(None), queued.c.lease_until < now)
        with self.engine.connect() as conn:
            candidates = conn.execute(
                sa.select(queued.c.video_id).where(free).order_by(queued.c.start_tag, queued.c.added_at).limit(8)
            ).all()
        for (video_id,) in candidates:
            with self.engine.begin() as conn:
                taken = conn.execute(
                    queued.update()
                    .where(queued.c.video_id == video_id, free)
                    .values(worker=worker, lease_until=now + self.lease_s, attempts=queued.c.attempts + 1)
                ).rowcount
                if taken != 1:
                    continue  # another worker took it first
                row = conn.execute(sa.select(queued).where(queued.c.video_id == video_id)).one()
            return Claim(row.video_id, row.creator_id, EventEnvelope.from_json(row.event), worker, row.attempts)
        return None

    def renew(self, claim: Claim) -> bool:
        """Extend the lease; False when the request is no longer this worker's (its lease lapsed and another
        worker took it, or it was finished)."""
        with self.engine.begin() as conn:
            return (
                conn.execute(
                    queued.update()
                    .where(queued.c.video_id == claim.video_id, queued.c.worker == claim.worker)
                    .values(lease_until=self.clock() + self.lease_s)
                ).rowcount
                == 1
            )

    def finish(self, claim: Claim) -> None:
        """The request was handled (rendered, failed on record, or given up): it leaves the queue."""
        with self.engine.begin() as conn:
            conn.execute(queued.delete().where(queued.c.video_id == claim.video_id))

    def release(self, claim: Claim) -> None:
        """Give a request back untried (the store was unreachable): it keeps its place and its attempts."""
        untried = sa.case((queued.c.attempts > 0, queued.c.attempts - 1), else_=0)
        with self.engine.begin() as conn:
            conn.execute(
                queued.update()
                .where(queued.c.video_id == claim.video_id, queued.c.worker == claim.worker)
                .values(worker=None, lease_until=None, attempts=untried)
            )

    def waiting(self) -> list[Waiting]:
        """The queue in serving order."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(
                    queued.c.video_id, queued.c.creator_id, queued.c.cost, queued.c.start_tag, queued.c.worker
                ).order_by(queued.c.start_tag, queued.c.added_at)
            ).all()
        return [Waiting(*row) for row in rows]


def _insert_ignoring_duplicates(conn: Connection, table: sa.Table, values: dict[str, Any]) -> bool:
    """INSERT ... ON CONFLICT DO NOTHING on SQLite and PostgreSQL; True when the row was inserted."""
    from sqlalchemy.dialects import postgresql, sqlite

    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return bool(conn.execute(dialect.insert(table).values(**values).on_conflict_do_nothing()).rowcount)


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"


def serve_renders(
    queue: RenderQueue,
    render: Callable[[EventEnvelope], None],
    give_up: Callable[[Claim], None],
    stop: threading.Event,
    *,
    idle_s: float = 0.5,
) -> int:
    """Render queued requests one at a time until `stop` is set; returns how many were handled.

    `render` handles a `GenerationRequested` event (the render gate: it records the result or the failure).
    `give_up` records a failure for a request that took its worker down `queue.max_attempts` times.
    """
    from provenance.kafka.errors import is_transient

    worker = worker_name()
    handled = 0
    delay = idle_s
    while not stop.is_set():
        try:
            claim = queue.claim(worker)
        except sa.exc.OperationalError as exc:
            log.warning("render queue unreachable (%s); retrying in %.1f s", exc.orig, delay)
            stop.wait(delay)
            delay = min(delay * 2, 30.0)
            continue
        if claim is None:
            stop.wait(idle_s)
            continue
        delay = idle_s
        try:
            if claim.attempts > queue.max_attempts:
                give_up(claim)
            else:
                with _renewing(queue, claim):
                    render(claim.event)
        except Exception as exc:
            if not is_transient(exc):
                raise
            log.warning("render of %s put back: %s", claim.video_id, exc)
            queue.release(claim)
            stop.wait(idle_s)
            continue
        queue.finish(claim)
        handled += 1
    return handled


class _renewing:
    """Renews a claim's lease from a thread of its own while the render runs."""

    def __init__(self, queue: RenderQueue, claim: Claim) -> None:
        self.queue = queue
        self.claim = claim
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"lease-{claim.video_id}", daemon=True)

    def _run(self) -> None:
        while not self.done.wait(self.queue.lease_s / 3):
            try:
                if not self.queue.renew(self.claim):
                    log.warning("lost the lease on render %s; another worker may take it", self.claim.video_id)
                    return
            except sa.exc.OperationalError as exc:
                log.warning("could not renew the lease on render %s: %s", self.claim.video_id, exc.orig)

    def __enter__(self) -> None:
        self.thread.start()

    def __exit__(self, *_: object) -> None:
        self.done.set()
        self.thread.join()
