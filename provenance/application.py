"""The write side's service layer: every command of the domain, with the rules that span aggregates.

`save()` is the unit of work: a command that touches several aggregates (a remix records itself on its
parent; a revocation takes down hundreds of videos) saves them in one transaction, so either all of it is
recorded or none. Optimistic concurrency conflicts are retried with fresh aggregates.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar
from uuid import NAMESPACE_URL, UUID, uuid4, uuid5

import orjson
from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.persistence import IntegrityError

from provenance.blobstore import BlobStore
from provenance.config import Settings
from provenance.domain.cameo import Cameo
from provenance.domain.person import Person, person_id_for
from provenance.domain.stream import EventStream
from provenance.domain.video import IN_FLIGHT, PUBLISHED, Video
from provenance.errors import ConsentError, InvalidInput, NotFound, NotPermitted, ProvenanceError, RuleViolation
from provenance.keystore import KeyStore
from schemas import events as e
from schemas.catalogue import InvalidEvent

T = TypeVar("T")
TStream = TypeVar("TStream", bound=EventStream)

_IDS = uuid5(NAMESPACE_URL, "provenance:ids")
SYSTEM = "system"


def derived_id(kind: str, *parts: object) -> UUID:
    """A stable id from a command id (and whatever else identifies the thing), so retries are no-ops."""
    return uuid5(_IDS, ":".join([kind, *map(str, parts)]))


def new_command_id() -> str:
    return str(uuid4())


@dataclass(frozen=True)
class PublishOutcome:
    published: bool
    reasons: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class TakedownRecord:
    video_id: str
    case_id: str
    source: str


@dataclass(frozen=True)
class RevocationOutcome:
    grant_id: str
    takedowns: list[TakedownRecord]
    blocked: list[str]


def _payload(model: type[e.Payload], **fields: Any) -> Any:
    """Build a payload model, turning schema violations into the user-facing `InvalidInput`."""
    from pydantic import ValidationError

    try:
        return model(**fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or model.__name__
        raise InvalidInput(f"{where}: {first['msg']}") from exc


class ProvenanceApp(Application[UUID]):
    """Commands for people, cameos and videos. Actors are person ids, or `system:<role>` for workers."""

    is_snapshotting_enabled = False

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        clock: Callable[[], datetime] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.settings = settings or Settings.from_env()
        self.clock = clock or (lambda: datetime.now(UTC))
        cache = {"AGGREGATE_CACHE_MAXSIZE": "10000", "DEEPCOPY_FROM_AGGREGATE_CACHE": "n"}
        super().__init__(env={**cache, **_persistence_env(self.settings), **(env or {})})
        self._local = threading.local()
        self._keystore: KeyStore | None = None
        self._blobs: BlobStore | None = None

    @property
    def keystore(self) -> KeyStore:
        if self._keystore is None:
            self.settings.home.mkdir(parents=True, exist_ok=True)
            self._keystore = KeyStore(self.settings.keys_database)
        return self._keystore

    @property
    def blobs(self) -> BlobStore:
        if self._blobs is None:
            self._blobs = BlobStore(self.settings.blob_root)
        return self._blobs

    # --- loading -----------------------------------------------------------------------------------------

    def _get(self, cls: type[TStream], stream_id: UUID | str, what: str) -> TStream:
        try:
            uid = stream_id if isinstance(stream_id, UUID) else UUID(str(stream_id))
        except ValueError:
            raise NotFound(f"{what} {stream_id!r} is not a valid id") from None
        try:
            prefetched: dict[UUID, EventStream] | None = getattr(self._local, "prefetched", None)
            found = prefetched.get(uid) if prefetched else None
            aggregate: EventStream = found if found is not None else self.repository.get(uid)
            loaded = getattr(self._local, "loaded", None)
            if loaded is not None:
                loaded.append(uid)
        except AggregateNotFoundError:
            raise NotFound(f"no {what} with id {uid}") from None
        if not isinstance(aggregate, cls):
            raise NotFound(f"{uid} is a {type(aggregate).__name__.lower()}, not a {what}")
        return aggregate

    def person(self, person_id: UUID | str) -> Person:
        return self._get(Person, person_id, "person")

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

    def _retrying(self, command: Callable[[], T]) -> T:
        """Run a command, again with fresh aggregates if another writer got there first.

        Aggregates come from the repository's cache without a copy (copying dominated command cost), so a
        command that fails after changing an aggregate evicts what it loaded: no half-applied change lives on.
        """
        for _ in range(5):
            self._local.loaded = []
            self._local.prefetched = {}
            try:
                return command()
            except IntegrityError:
                self._evict_loaded()
                continue
            except BaseException:
                self._evict_loaded()
                raise
            finally:
                self._local.prefetched = {}
        raise ProvenanceError("the command kept conflicting with concurrent changes; try again")

    def _prefetch_videos_and_remixes(self, video_ids: Iterable[str | UUID]) -> None:
        """Bring the videos and every remix below them up to date, one query per generation of remixes.

        A revocation can touch thousands of videos; loading them one by one costs a query each, even from
        the cache (it is fast-forwarded from the store). What this loads is what `_get` would have loaded
        at this point; it stays valid until the command ends, like any aggregate the command holds.
        """
        level = list(dict.fromkeys(UUID(str(v)) for v in video_ids))
        seen: set[UUID] = set()
        while level:
            seen.update(level)
            loaded = self._prefetch(level)
            level = [
                child
                for video in loaded
                if isinstance(video, Video)
                for child in dict.fromkeys(UUID(c) for c in video.children)
                if child not in seen
            ]

    def _prefetch(self, ids: Sequence[UUID]) -> list[EventStream]:
        """Current versions of many aggregates from one query per 500 ids (SQLite store, cache on).

        Elsewhere it loads nothing and `_get` loads each aggregate when asked, as it always did.
        """
        from eventsourcing.application import project_aggregate
        from eventsourcing.persistence import StoredEvent
        from eventsourcing.sqlite import SQLiteAggregateRecorder

        prefetched: dict[UUID, EventStream] | None = getattr(self._local, "prefetched", None)
        repository = self.repository
        recorder = self.recorder
        cache = repository.cache
        if (
            prefetched is None
            or cache is None
            or repository.deepcopy_from_cache
            or self.snapshots is not None
            or not isinstance(recorder, SQLiteAggregateRecorder)
        ):
            return []
        wanted = [uid for uid in ids if uid not in prefetched]
        out: list[EventStream] = []
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            rows: dict[str, list[Any]] = {}
            marks = ",".join("?" * len(chunk))
            statement = (
                "SELECT originator_id, originator_version, topic, state "
                f"FROM {recorder.events_table_name} WHERE originator_id IN ({marks}) "
                "ORDER BY originator_id, originator_version"
            )
            with recorder.datastore.transaction(commit=False) as cursor:
                cursor.execute(statement, [uid.hex for uid in chunk])
                for row in cursor.fetchall():
                    rows.setdefault(row[0], []).append(row)
            for uid in chunk:
                stored = rows.get(uid.hex, [])
                try:
                    aggregate: Any = cache.get(uid)
                except KeyError:
                    aggregate = None
                if aggregate is not None and not repository.fastforward:
                    pass  # the repository would hand out the cached aggregate as it is
                else:
                    after = aggregate.version if aggregate is not None else 0
                    events = [
                        self.mapper.to_domain_event(
                            StoredEvent(originator_id=uid, originator_version=version, topic=topic, state=state)
                        )
                        for _, version, topic, state in stored
                        if version > after
                    ]
                    if aggregate is None and not events:
                        continue  # no such aggregate: `_get` says so when it is asked for
                    fresh = aggregate is None
                    aggregate = project_aggregate(aggregate, events)
                    if aggregate is None:
                        continue
                    if fresh:
                        cache.put(uid, aggregate)
                if isinstance(aggregate, EventStream):
                    prefetched[uid] = aggregate
                    out.append(aggregate)
        return out

    def _evict_loaded(self) -> None:
        cache = self.repository.cache
        for aggregate_id in getattr(self._local, "loaded", []):
            if cache is not None:
                with contextlib.suppress(KeyError):
                    cache.get(aggregate_id, evict=True)

    # --- people ------------------------------------------------------------------------------------------

    def register_person(
        self,
        handle: str,
        display_name: str = "",
        roles: Sequence[str] = ("member",),
        *,
        command_id: str | None = None,
    ) -> UUID:
        command_id = command_id or new_command_id()
        if not handle.strip() or not handle.replace("_", "").replace("-", "").replace(".", "").isalnum():
            raise InvalidInput(f"handle {handle!r} must be letters, digits, '_', '-' or '.'")
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

    def are_mutuals(self, a: UUID | str, b: UUID | str) -> bool:
        return self.person(a).follows(b) and self.person(b).follows(a)

    # --- cameos and consent ------------------------------------------------------------------------------

    def register_cameo(self, owner: UUID, reference_image: bytes, *, command_id: str | None = None) -> UUID:
        """Register a likeness; the reference image is stored encrypted under a key of its own."""
        command_id = command_id or new_command_id()
        if not reference_image:
            raise InvalidInput("the reference image is empty")
        cameo_id = derived_id("cameo", command_id)

        def run() -> UUID:
            self.person(owner)
            if self.exists(cameo_id):
                return cameo_id
            key_id = self.keystore.create_key()
            context = str(cameo_id).encode()
            blob = self.blobs.put_bytes(self.keystore.encrypt(key_id, reference_image, context))
            reference = self.keystore.encrypt(key_id, orjson.dumps({"blob": blob.uri}), context)
            cameo = Cameo.register(
                cameo_id,
                owner,
                hashlib.sha256(reference_image).hexdigest(),
                base64.b64encode(reference).decode(),
                key_id,
                e.Verification(method="self-attested", status="unverified"),
                command_id=command_id,
            )
            self.save(cameo)
            return cameo_id

        return self._retrying(run)

    def cameo_reference(self, cameo_id: UUID | str) -> bytes:
        """The decrypted reference image of a cameo (for the renderer and the likeness classifier)."""
        cameo = self.cameo(cameo_id)
        if cameo.erased:
            raise ConsentError(f"cameo {cameo.id} was erased by its owner")
        context = str(cameo.id).encode()
        reference = orjson.loads(
            self.keystore.decrypt(cameo.key_id, base64.b64decode(cameo.encrypted_reference), context)
        )
        sha = reference["blob"].rsplit(":", 1)[1]
        return self.keystore.decrypt(cameo.key_id, self.blobs.read_bytes(sha), context)

    def grant_consent(
        self,
        actor: UUID,
        cameo_id: UUID | str,
        audience: str,
        *,
        grantees: Iterable[UUID] = (),
        scope: Iterable[str] = ("generate", "remix"),
        expires_at: datetime | None = None,
        command_id: str | None = None,
    ) -> str:
        command_id = command_id or new_command_id()
        grant_id = str(derived_id("grant", command_id))
        grantee_ids = [str(g) for g in grantees]
        grant = _payload(
            e.ConsentGranted,
            grant_id=grant_id,
            audience=audience,
            grantees=grantee_ids,
            scope=sorted(set(scope)),
            expires_at=expires_at,
        )

        def run() -> str:
            cameo = self.cameo(cameo_id)
            for grantee in grantee_ids:
                self.person(grantee)
            if cameo.grant(str(actor), grant, self.clock(), command_id=command_id):
                self.save(cameo)
            return grant_id

        return self._retrying(run)

    def revoke_consent(
        self, actor: UUID | str, cameo_id: UUID | str, grant_id: str, reason: str, *, command_id: str | None = None
    ) -> RevocationOutcome:
        """Revoke a grant and take down, in the same transaction, every video that loses its consent.

        Each published video whose creator has no other live grant covering it gets a takedown pointing at
        the revocation, and every remix below it one pointing at its parent's takedown; videos still in
        flight are blocked at the consent gate.
        """
        command_id = command_id or new_command_id()

        def run() -> RevocationOutcome:
            cameo = self.cameo(cameo_id)
            actor_ts = self._is_trust_and_safety(actor)
            if not cameo.revoke(str(actor), grant_id, reason, is_trust_and_safety=actor_ts, command_id=command_id):
                return RevocationOutcome(grant_id, [], [])
            grant = cameo.grants[grant_id]
            cause = e.EventRef(event_id=grant.revocation_event_id or "", stream_id=str(cameo.id))
            now = self.clock()
            changed: dict[UUID, Video] = {}
            takedowns: list[TakedownRecord] = []
            blocked: list[str] = []
            uses = list(cameo.uses_under(grant_id))
            self._prefetch_videos_and_remixes(use.video_id for use in uses)
            # The cameo and the clock stand still during the command: one answer per creator and purpose.
            answers: dict[tuple[str, str], ConsentError | None] = {}
            for use in uses:
                video = self.video(use.video_id)
                asked = (use.creator_id, _purpose(video))
                if asked not in answers:
                    try:
                        self._consent(cameo, use.creator_id, asked[1], now)
                        answers[asked] = None
                    except ConsentError as refused:
                        answers[asked] = refused
                why = answers[asked]
                if why is None:
                    continue  # still covered by another live grant
                statement = f"Consent for cameo {cameo.id} was revoked by {actor}: {reason}. {why}"
                if video.state in IN_FLIGHT:
                    blocked_event = _payload(e.VideoBlocked, gate="consent", reasons=[statement])
                    if video.block(blocked_event, str(actor), command_id=command_id):
                        changed[video.id] = video
                        blocked.append(str(video.id))
                elif video.is_live:
                    takedowns += self._take_down_tree(
                        video,
                        changed,
                        actor=str(actor),
                        command_id=command_id,
                        reason_code="consent_revoked",
                        statement=statement,
                        source="consent_revocation",
                        automated=True,
                        caused_by=cause,
                        policy_clause="likeness-consent",
                        legal_ground=None,
                    )
            self.save(cameo, *changed.values())
            return RevocationOutcome(grant_id, takedowns, blocked)

        return self._retrying(run)

    def erase_cameo(self, actor: UUID, cameo_id: UUID | str, reason: str, *, command_id: str | None = None) -> None:
        """Crypto-shred the likeness: destroy its key and its encrypted blob, and record that it was done."""
        command_id = command_id or new_command_id()

        def run() -> None:
            cameo = self.cameo(cameo_id)
            if cameo.erase(str(actor), reason, command_id=command_id):
                self.keystore.destroy(cameo.key_id)
                self.save(cameo)

        self._retrying(run)

    def videos_with_cameo(self, actor: UUID | str, cameo_id: UUID | str) -> list[Video]:
        """Every video that uses the cameo: its owner (and trust and safety) can see all of them."""
        cameo = self.cameo(cameo_id)
        if str(actor) != cameo.owner_id and not self._is_trust_and_safety(actor):
            raise NotPermitted(f"only the owner of cameo {cameo.id} can list the videos that use it")
        return [self.video(use.video_id) for use in cameo.uses]

    def _consent(self, cameo: Cameo, person_id: str, purpose: str, now: datetime) -> str:
        """The live grant that covers this use of the cameo, or `ConsentError` saying why there is none."""
        owner = cameo.owner_id
        return cameo.consent_for(person_id, purpose, now, lambda: self.are_mutuals(owner, person_id))

    def _is_trust_and_safety(self, actor: UUID | str) -> bool:
        if str(actor).startswith(f"{SYSTEM}:"):
            return False
        try:
            return self.person(actor).is_trust_and_safety
        except NotFound:
            return False

    # --- videos: request and gates -----------------------------------------------------------------------

    def request_generation(
        self,
        actor: UUID,
        prompt: str,
        *,
        parameters: dict[str, Any] | None = None,
        seed: int | None = None,
        cameo_ids: Iterable[UUID | str] = (),
        remix_of: UUID | str | None = None,
        command_id: str | None = None,
    ) -> UUID:
        """Record a generation request, refused before anything is rendered if any consent is missing."""
        command_id = command_id or new_command_id()
        video_id = derived_id("video", command_id)
        default_seed = int.from_bytes(hashlib.sha256(command_id.encode()).digest()[:7])
        requested_cameos = list(dict.fromkeys(str(c) for c in cameo_ids))

        def run() -> UUID:
            creator = self.person(actor)
            if self.exists(video_id):
                return video_id
            now = self.clock()
            params = dict(parameters or {})
            chosen_seed = default_seed if seed is None else seed
            parent: Video | None = None
            inherited: list[str] = []
            if remix_of is not None:
                parent = self.video(remix_of)
                if not parent.is_live:
                    raise RuleViolation(f"video {parent.id} is not published (or was taken down): it cannot be remixed")
                params = {**parent.parameters, **params}
                inherited = parent.cameo_ids
                # A remix keeps its parent's seed unless told otherwise, so what the prompts share moves alike.
                chosen_seed = parent.seed if seed is None else chosen_seed
            cameos: list[Cameo] = []
            in_video: list[e.CameoInVideo] = []
            for cameo_id in dict.fromkeys([*inherited, *requested_cameos]):
                cameo = self.cameo(cameo_id)
                purpose = "remix" if cameo_id in inherited else "generate"
                grant_id = self._consent(cameo, str(creator.id), purpose, now)
                cameos.append(cameo)
                in_video.append(e.CameoInVideo(cameo_id=str(cameo.id), grant_id=grant_id))
            request = _payload(
                e.GenerationRequested,
                creator_id=str(creator.id),
                prompt=prompt,
                parameters=params,
                seed=chosen_seed,
                cameos=in_video,
                remix_of=str(parent.id) if parent else None,
            )
            video = Video.request(video_id, request, command_id=command_id)
            for cameo, used in zip(cameos, in_video, strict=True):
                cameo.record_use(video_id, str(creator.id), used.grant_id, command_id=command_id)
            touched: list[EventStream] = [video, *cameos]
            if parent is not None:
                parent.record_remix(video_id, str(creator.id), command_id=command_id)
                touched.append(parent)
            self.save(*touched)
            return video_id

        return self._retrying(run)

    def record_render(
        self, video_id: UUID | str, result: dict[str, Any], *, command_id: str, actor: str = "system:generator"
    ) -> bool:
        rendered = _payload(e.VideoRendered, **result)
        return self._on_video(video_id, lambda v: v.record_render(rendered, actor, command_id=command_id))

    def record_render_failure(
        self,
        video_id: UUID | str,
        reason: str,
        *,
        retryable: bool = False,
        command_id: str,
        actor: str = "system:generator",
    ) -> bool:
        failure = _payload(e.RenderFailed, reason=reason, retryable=retryable)
        return self._on_video(video_id, lambda v: v.record_render_failure(failure, actor, command_id=command_id))

    def record_moderation(
        self, video_id: UUID | str, decision: dict[str, Any], *, command_id: str, actor: str = "system:moderation"
    ) -> bool:
        """Record the decision; a `block` verdict also blocks the video at the moderation gate."""
        decided = _payload(e.ModerationDecided, **decision)
        if not actor.startswith(f"{SYSTEM}:") and not self._is_trust_and_safety(actor):
            raise NotPermitted("only trust and safety can record a moderation decision by hand")

        def apply(video: Video) -> bool:
            recorded = video.record_moderation(decided, actor, command_id=command_id)
            if decided.verdict == "block":
                reasons = decided.reasons or ["a classifier blocked it"]
                recorded |= video.block(
                    e.VideoBlocked(gate="moderation", reasons=reasons), actor, command_id=command_id
                )
            return recorded

        return self._on_video(video_id, apply)

    def record_signature(
        self, video_id: UUID | str, signature: dict[str, Any], *, command_id: str, actor: str = "system:signing"
    ) -> bool:
        signed = _payload(e.VideoSigned, **signature)
        return self._on_video(video_id, lambda v: v.record_signature(signed, actor, command_id=command_id))

    def block(
        self, video_id: UUID | str, gate: str, reasons: list[str], *, command_id: str, actor: str = "system:gate"
    ) -> bool:
        blocked = _payload(e.VideoBlocked, gate=gate, reasons=reasons)
        return self._on_video(video_id, lambda v: v.block(blocked, actor, command_id=command_id))

    def publish(
        self, video_id: UUID | str, *, command_id: str | None = None, actor: str = "system:gate"
    ) -> PublishOutcome:
        """Publish a signed video, re-checking every cameo's consent now; a lapsed consent blocks it instead."""
        command_id = command_id or new_command_id()

        def run() -> PublishOutcome:
            video = self.video(video_id)
            if video.handled(command_id):
                return PublishOutcome(video.state == PUBLISHED, list(video.block_reasons))
            if not actor.startswith(f"{SYSTEM}:") and actor != video.creator_id:
                raise NotPermitted(f"only the creator of video {video.id} can publish it")
            now = self.clock()
            problems: list[str] = []
            checked: list[e.CameoInVideo] = []
            for used in video.cameos:
                cameo = self.cameo(used["cameo_id"])
                try:
                    grant_id = self._consent(cameo, video.creator_id, _purpose(video), now)
                    checked.append(e.CameoInVideo(cameo_id=str(cameo.id), grant_id=grant_id))
                except ConsentError as exc:
                    problems.append(str(exc))
            if video.remix_of is not None and not self.video(video.remix_of).is_live:
                problems.append(f"the parent video {video.remix_of} is no longer published")
            if problems:
                video.block(e.VideoBlocked(gate="consent", reasons=problems), actor, command_id=command_id)
                self.save(video)
                return PublishOutcome(False, problems)
            video.publish(e.VideoPublished(consent_checked=checked), actor, command_id=command_id)
            self.save(video)
            return PublishOutcome(True)

        return self._retrying(run)

    def _on_video(self, video_id: UUID | str, change: Callable[[Video], bool]) -> bool:
        def run() -> bool:
            video = self.video(video_id)
            if change(video):
                self.save(video)
                return True
            return False

        return self._retrying(run)

    # --- takedowns ---------------------------------------------------------------------------------------

    def take_down(
        self,
        video_id: UUID | str,
        actor: UUID | str,
        *,
        reason_code: str,
        statement_of_reasons: str,
        policy_clause: str | None = None,
        legal_ground: str | None = None,
        source: str | None = None,
        command_id: str | None = None,
    ) -> list[TakedownRecord]:
        """Take a published video down, and every remix below it, each with its own case on record.

        Trust and safety may take down anything (source `notice` or `own_initiative`); the owner of a cameo
        in the video may take that video down (source `cameo_owner`).
        """
        command_id = command_id or new_command_id()

        def run() -> list[TakedownRecord]:
            video = self.video(video_id)
            if video.handled(command_id):
                return []
            if self._is_trust_and_safety(actor):
                chosen = source or "own_initiative"
                if chosen not in ("notice", "own_initiative"):
                    raise InvalidInput(f"source must be notice or own_initiative, not {chosen!r}")
            elif any(self.cameo(c).owner_id == str(actor) for c in video.cameo_ids):
                chosen = "cameo_owner"
            else:
                raise NotPermitted(
                    f"only trust and safety or the owner of a cameo in video {video.id} can take it down"
                )
            if not video.is_live:
                raise RuleViolation(
                    f"video {video.id} is not live (it is {video.state}{', taken down' if video.is_taken_down else ''})"
                )
            changed: dict[UUID, Video] = {}
            records = self._take_down_tree(
                video,
                changed,
                actor=str(actor),
                command_id=command_id,
                reason_code=reason_code,
                statement=statement_of_reasons,
                source=chosen,
                automated=False,
                caused_by=None,
                policy_clause=policy_clause,
                legal_ground=legal_ground,
            )
            self.save(*changed.values())
            return records

        return self._retrying(run)

    def _take_down_tree(
        self,
        root: Video,
        changed: dict[UUID, Video],
        *,
        actor: str,
        command_id: str,
        reason_code: str,
        statement: str,
        source: str,
        automated: bool,
        caused_by: e.EventRef | None,
        policy_clause: str | None,
        legal_ground: str | None,
    ) -> list[TakedownRecord]:
        """Take down `root` and, breadth first, every live descendant; in-flight remixes are blocked."""
        records: list[TakedownRecord] = []
        case_id = str(derived_id("case", command_id, root.id))
        takedown = _payload(
            e.TakedownIssued,
            case_id=case_id,
            reason_code=reason_code,
            policy_clause=policy_clause,
            legal_ground=legal_ground,
            source=source,
            automated=automated,
            statement_of_reasons=statement,
            caused_by=caused_by,
        )
        if root.take_down(takedown, actor, command_id=command_id):
            changed[root.id] = root
            records.append(TakedownRecord(str(root.id), case_id, source))
        queue: list[tuple[Video, str]] = [(root, case_id)]
        while queue:
            parent, parent_case = queue.pop(0)
            cause = e.EventRef(event_id=parent.cases[parent_case].event_id, stream_id=str(parent.id))
            for child_id in parent.children:
                child = changed.get(UUID(child_id)) or self.video(child_id)
                why = f"Remix of video {parent.id}, which was taken down (case {parent_case}): {statement}"
                if child.state in IN_FLIGHT:
                    if child.block(e.VideoBlocked(gate="consent", reasons=[why]), actor, command_id=command_id):
                        changed[child.id] = child
                    continue
                if not child.is_live:
                    continue
                child_case = str(derived_id("case", command_id, child.id))
                cascade = _payload(
                    e.TakedownIssued,
                    case_id=child_case,
                    reason_code=reason_code,
                    policy_clause=policy_clause,
                    legal_ground=legal_ground,
                    source="cascade",
                    automated=True,
                    statement_of_reasons=why[:5000],
                    caused_by=cause,
                )
                child.take_down(cascade, actor, command_id=command_id)
                changed[child.id] = child
                records.append(TakedownRecord(str(child.id), child_case, "cascade"))
                queue.append((child, child_case))
        return records

    def appeal(
        self, video_id: UUID | str, case_id: str, actor: UUID | str, grounds: str, *, command_id: str | None = None
    ) -> None:
        command_id = command_id or new_command_id()
        appeal = _payload(e.TakedownAppealed, case_id=case_id, grounds=grounds)
        self._on_video(video_id, lambda v: v.appeal(appeal, str(actor), command_id=command_id))

    def reinstate(
        self, video_id: UUID | str, case_id: str, actor: UUID | str, decision: str, *, command_id: str | None = None
    ) -> None:
        """Close a takedown case in the video's favour (trust and safety only).

        A case caused by a consent revocation can only be closed while the consent is live again.
        """
        command_id = command_id or new_command_id()
        if not self._is_trust_and_safety(actor):
            raise NotPermitted("only trust and safety can reinstate a video")
        reinstated = _payload(e.VideoReinstated, case_id=case_id, decision=decision)

        def change(video: Video) -> bool:
            case = video.cases.get(case_id)
            if case is not None and case.source == "consent_revocation" and not video.handled(command_id):
                now = self.clock()
                for used in video.cameos:
                    self._consent(self.cameo(used["cameo_id"]), video.creator_id, _purpose(video), now)
            return video.reinstate(reinstated, str(actor), command_id=command_id)

        self._on_video(video_id, change)


def _purpose(video: Video) -> str:
    """A remix uses the likenesses it inherits under the `remix` scope of consent."""
    return "remix" if video.remix_of else "generate"


def _persistence_env(settings: Settings) -> dict[str, str]:
    """eventsourcing's own configuration, derived from ours."""
    if settings.event_store == "memory":
        return {"PERSISTENCE_MODULE": "eventsourcing.popo"}
    if settings.event_store == "sqlite":
        settings.home.mkdir(parents=True, exist_ok=True)
        return {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(settings.events_path)}
    from urllib.parse import unquote, urlparse

    from provenance.errors import require

    require("psycopg", "postgres")
    dsn = urlparse(settings.postgres_dsn or "")
    return {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": dsn.path.lstrip("/") or "provenance",
        "POSTGRES_HOST": dsn.hostname or "127.0.0.1",
        "POSTGRES_PORT": str(dsn.port or 5432),
        "POSTGRES_USER": unquote(dsn.username or "postgres"),
        "POSTGRES_PASSWORD": unquote(dsn.password or ""),
    }
