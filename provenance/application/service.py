"""What every command handler shares: its collaborators, loading aggregates, and retrying on conflicts.

`save()` is the unit of work: a command that touches several aggregates (a remix records itself on its
parent; a revocation takes down hundreds of videos) saves them in one call, so either all of it is recorded
or none. Optimistic concurrency conflicts are retried with fresh aggregates.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Container, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application, ProcessingEvent
from eventsourcing.persistence import IntegrityError, Recording

from kernel.blobstore import BlobStore
from kernel.errors import InvalidInput, NotFound, ProvenanceError, quoted
from kernel.memory import no_cyclic_collection
from provenance.application.recent import RecentEvents
from provenance.domain.cameo import Cameo
from provenance.domain.consent import Coverage, coverage, covering_grant
from provenance.domain.person import Person, person_id_for
from provenance.domain.stream import EventStream
from provenance.domain.video import Video
from provenance.keystore import LikenessKeys
from provenance.reference_check import ReferenceCheck

T = TypeVar("T")
TStream = TypeVar("TStream", bound=EventStream)

SYSTEM = "system"
"""Actors that are not people are `system:<role>` (the gate workers)."""

OPERATOR = "system:operator"
"""The operator of the server machine, acting through the local command line (files and database access are
their credentials); over HTTP every actor is an authenticated person or client."""


class BatchLoader(Protocol):
    """Loads the current versions of many aggregates at once (an adapter over the event store)."""

    def load(self, ids: list[UUID], known: Mapping[UUID, EventStream]) -> list[EventStream]: ...


class Service(Application[UUID]):
    """The application service's core; the command handlers (people, cameos, videos, takedowns) extend it.

    Collaborators come from the composition root (`provenance.bootstrap`): the event store's configuration,
    the likeness key store, the blob store, the clock and the check a cameo's reference must pass; a batch
    loader where the store has one.
    """

    is_snapshotting_enabled = False

    def __init__(
        self,
        env: Mapping[str, str],
        *,
        keystore: LikenessKeys,
        blobs: BlobStore,
        clock: Callable[[], datetime],
        reference_check: ReferenceCheck,
        max_render_cost: int,
        exported_videos: Path | None = None,
    ) -> None:
        cache = {"AGGREGATE_CACHE_MAXSIZE": "10000", "DEEPCOPY_FROM_AGGREGATE_CACHE": "n"}
        super().__init__(env={**cache, **env})
        self.keystore = keystore
        self.blobs = blobs
        self.clock = clock
        self.reference_check = reference_check
        self.max_render_cost = max_render_cost
        self.exported_videos = exported_videos
        """Where published files are given names (`<video id>.mp4`) beside the blob store, if anywhere."""
        self.batch_loader: BatchLoader | None = None
        self.recent = RecentEvents()
        self._local = threading.local()

    def _record(self, processing: ProcessingEvent[UUID]) -> list[Recording[UUID]]:
        recordings = super()._record(processing)
        self.recent.add(recordings)  # after the commit: only what is in the log
        return recordings

    def save(self, *objs: Any, **kwargs: Any) -> list[Recording[UUID]]:
        """eventsourcing's `save`, collecting the pending events of our own aggregates directly.

        eventsourcing 9.5 tells aggregates from events by two runtime-checkable protocols per object; on
        Python 3.11 those checks cost about 20 microseconds each, a fifth of a cascade that saves thousands of
        videos at once. Anything else goes to eventsourcing's own collection; the recording, the cache, the
        snapshots and the notifications are eventsourcing's, in its order.
        """
        for obj in objs:
            if not isinstance(obj, EventStream):  # a plain class check, not a protocol's
                return super().save(*objs, **kwargs)
        processing: ProcessingEvent[UUID] = ProcessingEvent()
        created: list[EventStream] = []
        for aggregate in objs:
            pending = aggregate.collect_events()
            if pending and pending[0].originator_version == 1:
                created.append(aggregate)
            processing.events.extend(pending)
            processing.aggregates[aggregate.id] = aggregate
        processing.saved_kwargs.update(kwargs)
        running: _Running | None = getattr(self._local, "running", None)
        if running is not None and running.outdated(self, besides=processing.aggregates):
            raise _OutdatedCopy  # what is saved may have been decided from it: nothing is recorded
        recordings = self._record(processing)
        if running is not None:
            running.saved.update(processing.aggregates)
        cache = self.repository.cache
        if cache is not None:  # a stream created here is cached as saved, as one loaded and changed is
            for aggregate in created:
                cache.put(aggregate.id, aggregate)
        self._take_snapshots(processing)
        self._notify(recordings)
        self.notify(processing.events)
        return recordings

    # --- loading -----------------------------------------------------------------------------------------

    def _get(self, cls: type[TStream], stream_id: UUID | str, what: str) -> TStream:
        uid = uuid_of(stream_id, what)
        try:
            running: _Running | None = getattr(self._local, "running", None)
            found = None
            if running is not None:
                found = running.prefetched.get(uid)
                if found is None and running.trusted is not None and running.writing:
                    found = _cached(self.repository.cache, uid)
                    if found is not None:
                        running.trusted[uid] = found.version
            aggregate: EventStream = found if found is not None else self.repository.get(uid)
            if running is not None:
                running.loaded.append(uid)
        except AggregateNotFoundError:
            raise NotFound(f"no {what} with id {uid}") from None
        if not isinstance(aggregate, cls):
            raise NotFound(f"{uid} is a {type(aggregate).__name__.lower()}, not a {what}")
        return aggregate

    def person(self, person_id: UUID | str) -> Person:
        return self._get(Person, person_id, "person")

    def registered(self, person_id: UUID | str) -> Person:
        """A registered person, for a command that needs no more than that they exist (their id).

        Registration is never undone, so a copy from the cache of any age proves it without a read.
        """
        cached = _cached(self.repository.cache, person_id) if isinstance(person_id, UUID) else None
        return cached if isinstance(cached, Person) else self.person(person_id)

    def person_by_handle(self, handle: str) -> Person:
        try:
            return self.person(person_id_for(handle))
        except NotFound:
            raise NotFound(f"no person with handle {handle!r}") from None

    def cameo(self, cameo_id: UUID | str) -> Cameo:
        return self._get(Cameo, cameo_id, "cameo")

    def video(self, video_id: UUID | str) -> Video:
        return self._get(Video, video_id, "video")

    def exists(self, stream_id: UUID) -> bool:
        try:
            self.repository.get(stream_id)
        except AggregateNotFoundError:
            return False
        return True

    def is_trust_and_safety(self, actor: UUID | str) -> bool:
        if str(actor).startswith(f"{SYSTEM}:"):
            return False
        try:
            return self.person(actor).is_trust_and_safety
        except NotFound:
            return False

    def are_mutuals(self, a: UUID | str, b: UUID | str) -> bool:
        return self.person(a).follows(b) and self.person(b).follows(a)

    def live_check(self, video: Video, now: datetime) -> Coverage:
        """The rule for this video now: every cameo in it under live consent, and the video it remixes live."""
        cameos = {cameo_id: self.cameo(cameo_id) for cameo_id in video.cameo_ids}
        checked = coverage(video, cameos, now, self.are_mutuals, self.inherited_cameos(video))
        if video.remix_of is not None and not self.video(video.remix_of).is_live:
            checked.reasons.append(f"the parent video {video.remix_of} is no longer published")
        return checked

    def inherited_cameos(self, video: Video) -> list[str]:
        """The cameos a remix took from the video it remixes (used under `remix` consent); none for an original."""
        return self.video(video.remix_of).cameo_ids if video.remix_of is not None else []

    def why_not_live(self, video: Video, now: datetime) -> list[str]:
        """Why the rule would not let this video be live now; empty when it would."""
        return self.live_check(video, now).reasons

    def consent(self, cameo: Cameo, person_id: str, purpose: str, now: datetime) -> str:
        """The live grant that covers this use of the cameo, or `ConsentError` saying why there is none."""
        owner = cameo.owner_id
        return covering_grant(cameo, person_id, purpose, now, lambda: self.are_mutuals(owner, person_id))

    # --- running commands --------------------------------------------------------------------------------

    def _retrying(self, command: Callable[[], T]) -> T:
        """Run a command, again with fresh aggregates if another writer got there first.

        Aggregates come from the repository's cache without a copy (copying dominated command cost), so a
        command that fails after changing an aggregate evicts what it loaded: no half-applied change lives on.

        The aggregate a command changes (`_writing`) is taken from the cache as it is, without asking the store
        for newer events: if another process recorded any, saving it conflicts on the version and the command
        runs again on a fresh copy. One taken that way and not saved (a video a cascade left alone, or the
        aggregate of a command that had nothing to do or refused) is checked against the store before anything
        else is saved, or after the command when nothing is; if the store has moved on, the command runs again on
        fresh copies. Every other aggregate a command reads (the consent it checks) is brought up to date when
        loaded.
        """
        trust = True
        outer: _Running | None = getattr(self._local, "running", None)
        try:
            for _ in range(5):
                running = self._local.running = _Running({} if trust else None)
                try:
                    with no_cyclic_collection():  # a cascade loads and changes thousands of aggregates
                        result = command()
                except IntegrityError:
                    self._evict(running.loaded)
                    continue
                except _OutdatedCopy:
                    self._evict(running.loaded)
                    trust = False
                    continue
                except Exception:
                    self._evict(running.loaded)
                    if running.refused_from_old_copy(self):
                        trust = False
                        continue
                    raise
                except BaseException:
                    self._evict(running.loaded)
                    raise
                if not running.outdated(self):
                    return result
                self._evict(running.loaded)
                trust = False
        finally:
            self._local.running = outer
        raise ProvenanceError("the command kept conflicting with concurrent changes; try again")

    def _writing(self, load: Callable[[], TStream]) -> TStream:
        """Load the aggregate the running command is about to change (see `_retrying`)."""
        running: _Running | None = getattr(self._local, "running", None)
        if running is None:
            return load()
        running.writing = True
        try:
            return load()
        finally:
            running.writing = False

    def _prefetch_videos_and_remixes(self, video_ids: Iterable[str | UUID]) -> None:
        """Have the videos the command is about to change, and every remix below them, at hand.

        A revocation can touch thousands of videos; loading them one by one costs a query each. Videos are
        what the cascade changes, so the cache's copies serve as they are (`_retrying` says why that is safe);
        the others are loaded up to date, in one batch per generation of remixes where the store has a batch
        loader (SQLite) and one by one elsewhere. What this finds stays valid until the command ends.
        """
        running: _Running | None = getattr(self._local, "running", None)
        if running is None:
            return
        prefetched, trusted = running.prefetched, running.trusted
        cache = self.repository.cache
        level = list(dict.fromkeys(UUID(str(v)) for v in video_ids))
        seen: set[UUID] = set()
        while level:
            seen.update(level)
            loaded: list[EventStream] = []
            if trusted is not None:
                for uid in level:
                    cached = _cached(cache, uid)
                    if isinstance(cached, Video):
                        trusted[uid] = cached.version
                        loaded.append(cached)
            if len(loaded) < len(level):
                found = {aggregate.id for aggregate in loaded}
                missing = [uid for uid in level if uid not in found]
                loaded += self._load_many(missing, prefetched)
            prefetched.update((aggregate.id, aggregate) for aggregate in loaded)
            level = [
                child
                for video in loaded
                if isinstance(video, Video)
                for child in dict.fromkeys(video.children)
                if child not in seen
            ]

    def _load_many(self, ids: list[UUID], known: Mapping[UUID, EventStream]) -> list[EventStream]:
        """The current versions of those of these aggregates that exist and are not `known`, in one batch where
        the store has a batch loader."""
        if self.batch_loader is not None:
            return self.batch_loader.load(ids, known)
        found: list[EventStream] = []
        for uid in ids:
            if uid in known:
                continue
            with contextlib.suppress(AggregateNotFoundError):
                aggregate: Any = self.repository.get(uid)
                if isinstance(aggregate, EventStream):
                    found.append(aggregate)
        return found

    def _evict(self, loaded: Iterable[UUID]) -> None:
        cache = self.repository.cache
        for aggregate_id in loaded:
            if cache is not None:
                with contextlib.suppress(KeyError):
                    cache.get(aggregate_id, evict=True)

    def _on_video(self, video_id: UUID | str, change: Callable[[Video], bool]) -> bool:
        return self._changing(lambda: self.video(video_id), change)

    def _changing(self, load: Callable[[], TStream], change: Callable[[TStream], bool]) -> bool:
        """Load one aggregate, change it, and save it if the change recorded anything (retried on conflicts)."""

        def run() -> bool:
            aggregate = self._writing(load)
            if change(aggregate):
                self.save(aggregate)
                return True
            return False

        return self._retrying(run)


def uuid_of(stream_id: UUID | str, what: str) -> UUID:
    """A stream id given as text or UUID; a malformed one is bad input."""
    try:
        return stream_id if isinstance(stream_id, UUID) else UUID(str(stream_id))
    except ValueError:
        raise InvalidInput(f"{what} id {quoted(stream_id)} is not a valid id (a UUID)") from None


def _cached(cache: Any, aggregate_id: UUID) -> Any:
    """The repository cache's copy of an aggregate, or None (without evicting or fast-forwarding it)."""
    if cache is None:
        return None
    try:
        return cache.get(aggregate_id)
    except KeyError:
        return None


@dataclass(slots=True)
class _Running:
    """What the command running on a thread took from the cache, loaded and saved (see `Service._retrying`)."""

    trusted: dict[UUID, int] | None
    """The version of each aggregate taken from the cache untested; None when nothing may be (a run again)."""
    loaded: list[UUID] = field(default_factory=list)
    prefetched: dict[UUID, EventStream] = field(default_factory=dict)
    saved: set[UUID] = field(default_factory=set)
    writing: bool = False
    """Loading the aggregate the command is about to change."""

    def outdated(self, service: Service, besides: Container[UUID] = ()) -> bool:
        """Whether an aggregate taken from the cache untested and not saved (nor `besides`, being saved now) has
        newer events in the store."""
        if not self.trusted:
            return False
        unsaved = [(uid, v) for uid, v in self.trusted.items() if uid not in self.saved and uid not in besides]
        if not unsaved:
            return False
        store = service.repository.event_store
        return any(next(iter(store.get(uid, gt=version, limit=1)), None) is not None for uid, version in unsaved)

    def refused_from_old_copy(self, service: Service) -> bool:
        """`outdated` for a command that raised: a store that cannot answer leaves its error as it is."""
        try:
            return self.outdated(service)
        except Exception:
            return False


class _OutdatedCopy(Exception):
    """A command was about to save what it may have decided from a cached copy the store has since moved past."""
