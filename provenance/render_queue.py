"""Requests waiting for a render, served fairly between creators.

The generator role's consumer does not render in partition order (one creator's hundred requests would hold
everybody else's behind them): it adds each request to this queue, in the projections database, and the
role's render loop takes the next one by start-time fair queueing. The HTTP service adds each request it
admits itself (so it can count a person's places in the queue), and in the embedded mode its gate thread
serves the queue the same way (`serve_next`). Each creator has a virtual clock that a
request advances by its cost (pixels x frames); a request starts at the later of its creator's clock and
the queue's virtual time (the smallest start still queued), and the smallest start is served first. So a
creator with one request waits for at most one render of every other creator, a creator who asks for
bigger renders gets proportionally fewer of them, and time spent idle earns no credit.

A taken request carries a lease that its worker renews while it renders; a worker that dies lets it lapse
and another worker takes the request again. A request that has taken its worker down `max_attempts` times
is given up rather than taking every worker down in turn. Only a lapsed lease counts as such an attempt: a
failure of the infrastructure (a store unreachable, a key store or model weights missing: `is_infrastructure`)
gives the request back untried, and is never recorded against the video. Replicas share the queue: taking a
request is one conditional `UPDATE`, so two workers never take the same one at the same time. A worker whose
lease lapsed while it still rendered (its renewals did not reach the database) may still finish its render,
whose result is recorded once by its command id, but it no longer holds the request: finishing or giving back
a claim changes the queue only while that claim (its worker and its attempt) still holds it.
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

    @staticmethod
    def _held_by(claim: Claim) -> sa.ColumnElement[bool]:
        """The request's row while this claim holds it: taken by the same worker, the same time (another take
        after a lapsed lease, even by a worker of the same name, counts one more attempt)."""
        return sa.and_(
            queued.c.video_id == claim.video_id,
            queued.c.worker == claim.worker,
            queued.c.attempts == claim.attempts,
        )

    def renew(self, claim: Claim) -> bool:
        """Extend the lease; False when the request is no longer this claim's (its lease lapsed and another
        worker took it, or it was finished or given back)."""
        with self.engine.begin() as conn:
            return (
                conn.execute(
                    queued.update().where(self._held_by(claim)).values(lease_until=self.clock() + self.lease_s)
                ).rowcount
                == 1
            )

    def finish(self, claim: Claim) -> bool:
        """The request was handled (rendered, failed on record, or given up): it leaves the queue. Only while
        the claim still holds it; False (and nothing changed) when another worker took it since."""
        with self.engine.begin() as conn:
            return conn.execute(queued.delete().where(self._held_by(claim))).rowcount == 1

    def release(self, claim: Claim) -> bool:
        """Give a request back untried (a store unreachable, the worker's setup broken): it keeps its place,
        and the attempt is not counted. Only while the claim still holds it; False otherwise."""
        untried = sa.case((queued.c.attempts > 0, queued.c.attempts - 1), else_=0)
        with self.engine.begin() as conn:
            return (
                conn.execute(
                    queued.update().where(self._held_by(claim)).values(worker=None, lease_until=None, attempts=untried)
                ).rowcount
                == 1
            )

    def queued_for(self, creator_id: str | None = None) -> int:
        """How many requests the queue holds (waiting, or being rendered): a creator's, or everybody's."""
        counted = sa.select(sa.func.count()).select_from(queued)
        if creator_id is not None:
            counted = counted.where(queued.c.creator_id == creator_id)
        with self.engine.connect() as conn:
            return int(conn.execute(counted).scalar() or 0)

    def next_lapse(self) -> float | None:
        """When the first lease on a request still held runs out (the queue's clock), or None when none is held."""
        with self.engine.connect() as conn:
            lapse = conn.execute(sa.select(sa.func.min(queued.c.lease_until))).scalar()
        return None if lapse is None else float(lapse)

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


def give_up_render(app: Any, queue: RenderQueue, claim: Claim) -> None:
    """Record that a request took its worker down `queue.max_attempts` times: a render failure while it waits for
    its render; past it (the embedded service's worker takes a video through every gate), a block at the gate it
    reached; nothing once it is out of flight or held for a person's review."""
    from provenance.domain.video import MODERATED, RENDERED, REQUESTED, SIGNED

    video = app.video(claim.video_id)
    if video.state == REQUESTED:
        reason = f"the render stopped its worker {queue.max_attempts} times; it is not tried again"
        app.record_render_failure(claim.video_id, reason, command_id=f"render:{claim.event.event_id}")
    elif video.state in (RENDERED, MODERATED, SIGNED) and not video.is_held_for_review:
        gate = "moderation" if video.state == RENDERED else "signing"
        reason = f"its {gate} stopped its worker {queue.max_attempts} times; it is not tried again"
        app.block(claim.video_id, gate, [reason], command_id=f"give-up:{claim.event.event_id}")
    else:
        return
    log.error("video %s given up: %s", claim.video_id, reason)


def serve_next(queue: RenderQueue, handle: Callable[[Claim], None], give_up: Callable[[Claim], None]) -> bool:
    """Take the request that is fairest to serve now and handle it, its lease renewed meanwhile (or `give_up` one
    that took its worker down `max_attempts` times); False when there was none to take. Handled, or failed for a
    reason of its own, it leaves the queue; a failure of the infrastructure (`is_infrastructure`) gives it back
    untried. A failure is raised either way."""
    from provenance.gates import is_infrastructure

    claim = queue.claim(worker_name())
    if claim is None:
        return False
    try:
        if claim.attempts > queue.max_attempts:
            give_up(claim)
        else:
            with _renewing(queue, claim):
                handle(claim)
    except Exception as exc:
        if is_infrastructure(exc):
            _give_back(queue, claim, exc)
        else:
            queue.finish(claim)
        raise
    queue.finish(claim)
    return True


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

    A transient failure (a store unreachable) gives the request back and the loop goes on after a pause. Any
    other failure of the infrastructure (`is_infrastructure`: model weights that do not load, a key store
    missing, a disk that cannot be read) also gives the request back, untried and unrecorded, and is raised:
    the role stops, and its supervisor's restart tries again once the setup is fixed. Only a worker that dies
    mid-render (its lease lapses) counts an attempt against the request.
    """
    from provenance.gates import is_infrastructure
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
        lease = _renewing(queue, claim)
        try:
            if claim.attempts > queue.max_attempts:
                give_up(claim)
            else:
                with lease:
                    render(claim.event)
        except Exception as exc:
            if not is_infrastructure(exc):
                raise  # a bug of the worker: the lease lapses, and the attempt counts
            _give_back(queue, claim, exc)
            if not is_transient(exc):
                raise  # the worker's setup is broken: stop the role, for its supervisor to restart
            stop.wait(idle_s)
            continue
        if lease.lost:
            # Another worker may be rendering it now; its result is recorded once, by the same command id.
            log.warning("render of %s ended after its lease was lost; left to the worker that holds it", claim.video_id)
            continue
        if queue.finish(claim):
            handled += 1
        else:
            log.warning("render of %s ended after another worker took it; left to that worker", claim.video_id)
    return handled


def _give_back(queue: RenderQueue, claim: Claim, exc: BaseException) -> None:
    """Release a claim untried after a failure of the infrastructure; when the queue cannot be reached either,
    the lease lapses on its own (and counts then as an attempt)."""
    log.warning("render of %s put back untried: %s", claim.video_id, exc)
    try:
        queue.release(claim)
    except sa.exc.SQLAlchemyError as failed:
        log.warning("could not give render %s back (%s); its lease will lapse", claim.video_id, failed)


class _renewing:
    """Renews a claim's lease from a thread of its own while the render runs."""

    def __init__(self, queue: RenderQueue, claim: Claim) -> None:
        self.queue = queue
        self.claim = claim
        self.done = threading.Event()
        self.lost = False
        """Set when a renewal found the request no longer this claim's."""
        self.thread = threading.Thread(target=self._run, name=f"lease-{claim.video_id}", daemon=True)

    def _run(self) -> None:
        while not self.done.wait(self.queue.lease_s / 3):
            try:
                if not self.queue.renew(self.claim):
                    self.lost = True
                    log.warning("lost the lease on render %s; another worker may take it", self.claim.video_id)
                    return
            except sa.exc.OperationalError as exc:
                log.warning("could not renew the lease on render %s: %s", self.claim.video_id, exc.orig)

    def __enter__(self) -> None:
        self.thread.start()

    def __exit__(self, *_: object) -> None:
        self.done.set()
        self.thread.join()
