"""The composition root: the only place where adapters are built and handed to whoever needs them.

Settings go in; out come the application service (with its event store, key store, blob store, clock and
batch loader), the projection store and read models, the gate stages, the trust configuration, the gate
workers and the runners. The CLI, `serve`, the Kafka roles, the demo, the benchmarks and the tests all build
the system through `System`; a test swaps an adapter for a fake by passing it in. Every adapter is built on
first use, so a command pays only for what it touches and nothing does I/O before it is asked to.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import UUID

from projections.database import sqlite_path
from provenance.config import Settings
from provenance.freshness import up_to_date_at

if TYPE_CHECKING:
    from kernel.blobstore import BlobStore
    from projections.framework import ProjectionStore
    from projections.queries import ReadModels
    from provenance.application import ProvenanceApp
    from provenance.consent_watch import ConsentWatch
    from provenance.credentials.trust import TrustConfig
    from provenance.domain.video import Video
    from provenance.gates import GateWorkers
    from provenance.keystore import LikenessKeys
    from provenance.reference_check import ReferenceCheck
    from provenance.runner import Consumer, EmbeddedRunner
    from schemas.envelope import EventEnvelope

WORKER_STAGES: Mapping[str, tuple[str, ...]] = {
    "generator": ("render",),
    "moderation": ("moderation",),
    "signing": ("signing", "publish"),
}
"""The gate workers each worker role of the distributed mode runs."""


SWEEP_EVERY = timedelta(seconds=1)
"""How often catching up with an unchanged log still sweeps for passed consent expiries."""


class System:
    """Everything one process needs, built lazily from one `Settings` (and fakes where a test gives them)."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        clock: Callable[[], datetime] | None = None,
        keystore: LikenessKeys | None = None,
        blobs: BlobStore | None = None,
        app_env: Mapping[str, str] | None = None,
        reference_check: ReferenceCheck | None = None,
    ) -> None:
        self.settings = settings or Settings.from_env()
        self.clock = clock or (lambda: datetime.now(UTC))
        self._keystore = keystore
        self._blobs = blobs
        self._app_env = dict(app_env or {})
        self._reference_check = reference_check
        self._catching_up = threading.Lock()
        self._caught_up: tuple[int, datetime] | None = None
        """The log head and the clock at the last catch-up."""
        self.checks_read_models = True
        """Whether opening the application refuses read models that have followed the log past its end (another
        event store than the one they were built from); `rebuild`, which replaces them, turns it off."""

    # --- the write side ------------------------------------------------------------------------------------

    @cached_property
    def keystore(self) -> LikenessKeys:
        from provenance.keystore import KeyStore

        if self._keystore is not None:
            return self._keystore
        self.settings.home.mkdir(parents=True, exist_ok=True)
        return KeyStore(self.settings.keys_database)

    @cached_property
    def blobs(self) -> BlobStore:
        from kernel.blobstore import BlobStore

        return self._blobs or BlobStore(self.settings.blob_root)

    @cached_property
    def app(self) -> ProvenanceApp:
        from provenance.application import ProvenanceApp
        from provenance.reference_check import OneFaceCheck

        if self.settings.event_store == "sqlite" and not self.settings.events_path.exists():
            self._refuse_read_models_ahead_of(lambda: 0)  # before an empty event store is made in its place
        env = {**event_store_env(self.settings), **self._app_env}
        check = self._reference_check or OneFaceCheck()
        app = ProvenanceApp(
            env,
            keystore=self.keystore,
            blobs=self.blobs,
            clock=self.clock,
            reference_check=check,
            max_render_cost=self.settings.max_render_cost,
            exported_videos=self.settings.exported_videos,
        )
        if self.settings.event_store == "sqlite" and "PERSISTENCE_MODULE" not in self._app_env:
            from provenance.batch_loader import SQLiteBatchLoader

            app.batch_loader = SQLiteBatchLoader(app)
        try:
            self._refuse_read_models_ahead_of(lambda: app.recorder.max_notification_id() or 0)
        except BaseException:
            app.close()
            raise
        return app

    def _refuse_read_models_ahead_of(self, head_of_log: Callable[[], int]) -> None:
        """Refuse (exit 6) read models that have applied more of the log than it holds: the event store is not
        the one they were built from (lost, or replaced), and what is recorded into it would never reach them.

        The read models' position is read before the log's end: another process recording and projecting in
        between moves both, and read the other way round its projection would look ahead of the log.

        Only where the read models follow this log (the embedded mode): the distributed mode's follow a Kafka
        topic, whose offsets are another numbering, and a log in memory is new in every process.
        """
        if (
            not self.checks_read_models
            or self.settings.kafka_bootstrap
            or self.settings.event_store == "memory"
            or "PERSISTENCE_MODULE" in self._app_env
        ):
            return
        from provenance.freshness import furthest_log_checkpoint

        furthest = furthest_log_checkpoint(self.reads.db)
        if furthest is None:
            return
        head = head_of_log()
        if furthest[1] <= head:
            return
        from kernel.errors import ProvenanceError
        from provenance.damage import redacted

        settings = self.settings
        events = (
            str(settings.events_path) if settings.event_store == "sqlite" else redacted(settings.postgres_dsn or "")
        )
        projections = sqlite_path(settings.projections_database) or redacted(settings.projections_database)
        raise ProvenanceError(
            f"the read models in {projections} have followed the log to position {furthest[1]} ({furthest[0]}), "
            f"but the event store at {events} ends at {head}: it is not the one they were built from. Restore it "
            "from a backup, or run `provenance rebuild` if the log was replaced on purpose; nothing was recorded"
        )

    # --- the read side -------------------------------------------------------------------------------------

    @cached_property
    def store(self) -> ProjectionStore:
        from projections.store import open_store
        from provenance.kafka.positions import creating_tables

        if self.settings.projections_database.startswith("sqlite"):
            self.settings.home.mkdir(parents=True, exist_ok=True)
        # Several processes of the distributed mode may create the tables at once: `creating_tables` retries.
        return creating_tables(lambda: open_store(self.settings.projections_database))

    @cached_property
    def reads(self) -> ReadModels:
        """The read models' queries, which need neither SQLAlchemy nor the write side."""
        from projections.queries import ReadModels

        reads = ReadModels(self.settings.projections_database)
        if not reads.db.sqlite_tables_ready():
            _ = self.store  # creates the tables, once per database (another process may be creating them too)
        return reads

    def runner(self, consumers: Sequence[Consumer] | None = None) -> EmbeddedRunner:
        from provenance.runner import EmbeddedRunner, ProjectionConsumer

        chosen = consumers if consumers is not None else [ProjectionConsumer(self.store)]
        return EmbeddedRunner(self.app, chosen)

    @cached_property
    def consent_watch(self) -> ConsentWatch:
        from provenance.consent_watch import ConsentWatch

        return ConsentWatch(self.app, self.store.engine)

    def pipeline(self, workers: GateWorkers) -> EmbeddedRunner:
        """Projections, the consent watch and the given gate workers, fed from the log in this process."""
        return self.runner([*self._read_side(), *workers.consumers(self.store.engine)])

    def _read_side(self) -> list[Consumer]:
        """What follows the log in every embedded process: the projections, then the consent watch."""
        from provenance.runner import ProjectionConsumer

        return [ProjectionConsumer(self.store), self.consent_watch.consumer()]

    def drive(self, video_id: UUID, workers: GateWorkers) -> Video:
        """Take one video through the given gates in this process, then bring the read models up to date.

        Only this video's own events are fed to the workers (no shared worker position moves), so several
        commands driving their own videos on one home never step on each other.
        """
        from provenance.log import stream_log

        handlers = list(workers.handlers().values())
        seen = 0
        while events := stream_log(self.app, video_id, "video", seen):
            for event in events:
                for handle in handlers:
                    handle(event)
            seen = events[-1].stream_version
        self.catch_up()
        return self.app.video(video_id)

    def catch_up(self) -> int:
        """Bring the read models up to the head of the log, after the consent watch did its part.

        The CLI does this after every command: it is also the embedded mode's expiry timer. In the distributed
        mode (a Kafka broker configured) the projections service builds the read models from the topic, and
        the CLI reads what it wrote rather than replaying the log itself: this does nothing there.

        Finding that there is nothing to do is cheap: a long-running process (the HTTP service calls this before
        every read) asks its own log for the head and goes on when nothing was recorded and the clock moved less
        than a second; any process on the embedded SQLite default asks the databases (`freshness`) without
        loading the write side, which is what lets a read command start quickly.
        """
        if self.settings.kafka_bootstrap:
            return 0

        with self._catching_up:  # one at a time: the HTTP service calls this from several threads
            now = self.clock()
            if self._caught_up is not None:
                head = self.app.recorder.max_notification_id() or 0
                if self._caught_up[0] == head and now - self._caught_up[1] < SWEEP_EVERY:
                    return 0
            elif self._on_sqlite and (at := up_to_date_at(self.settings.events_path, self.reads.db, now)) is not None:
                self._caught_up = (at, now)  # the next call in this process asks its own log, as after a catch-up
                return 0
            runner = self.runner(self._read_side())
            read = 0
            for _ in range(3):  # again once the expiries it recorded are projected, so the sweep saw them all
                projected = self.app.recorder.max_notification_id() or 0
                read += runner.run_until_idle()
                self.consent_watch.sweep_expiries(now, projected)
                if (self.app.recorder.max_notification_id() or 0) == projected:
                    break
            read += runner.run_until_idle()
            self._caught_up = (self.app.recorder.max_notification_id() or 0, now)
            return read

    @property
    def _on_sqlite(self) -> bool:
        """Both the events and the read models in the embedded SQLite files (not a test's fakes)."""
        return (
            self.settings.event_store == "sqlite"
            and "PERSISTENCE_MODULE" not in self._app_env
            and sqlite_path(self.settings.projections_database) is not None
        )

    # --- the gates -----------------------------------------------------------------------------------------

    def trust(self) -> TrustConfig | None:
        """The trust anchors verification uses: the configured file, or none (then nothing is `Trusted`)."""
        from provenance.credentials.trust import TrustConfig

        anchors = self.settings.trust_anchor_file
        if not anchors.is_file():
            return None
        return TrustConfig(anchor_files=(anchors,), distrust_file=self.distrust_file)

    @property
    def distrust_file(self) -> Path:
        """The signers no longer trusted, beside the trust anchors (`provenance pki distrust` writes it)."""
        from provenance.credentials.trust import DISTRUST_FILE

        return self.settings.trust_anchor_file.parent / DISTRUST_FILE

    def moderator_config(self, policy: Path | None = None) -> Any:
        """Production: the configured CLIP weights (fails closed without them). Development: the devkit model."""
        from moderation.backbone import BackboneConfig
        from moderation.config import ModeratorConfig

        settings = self.settings
        if settings.mode == "production":
            backbone = BackboneConfig(model_name=settings.clip_model, weights=settings.clip_weights)
            return ModeratorConfig(mode="production", backbone=backbone, policy=policy)
        from devkit.clip import development_backbone_config

        return ModeratorConfig(mode="development", backbone=development_backbone_config(), policy=policy)

    def gate_workers(
        self, *, render: bool = False, moderate: bool = False, sign: bool = False, policy: Path | None = None
    ) -> GateWorkers:
        """The gate workers with the real stages asked for; publishing needs no stage and is always there."""
        from provenance.gates import GateWorkers
        from provenance.stages import CredentialsStage, GeneratorStage, ModelModerationStage

        return GateWorkers(
            self.app,
            render=GeneratorStage(self.blobs) if render else None,
            moderate=ModelModerationStage(self.moderator_config(policy), self.cameo_index) if moderate else None,
            sign=CredentialsStage(
                self.blobs,
                self.settings.pki_directory,
                self.work_dir,
                self.settings.tsa_url,
                self.distrust_file,
            )
            if sign
            else None,
        )

    @cached_property
    def cameo_index(self) -> Any:
        """The moderation gate's index of every live cameo's sealed likeness embedding."""
        from provenance.likeness_index import CameoIndex, SealedEmbeddings

        sealed = SealedEmbeddings(self.settings.keys_database, self.keystore)
        return CameoIndex(self.app, lambda: self.reads.live_cameo_ids(), sealed)

    def verify_cameo(self, cameo_id: UUID) -> str | None:
        """Hold a new cameo whose likeness matches an active cameo of another person; returns why, or None.

        Registration checks what it can without a model (one face); this compares the face with the others'
        using the moderation gate's likeness model, so a cameo made from someone else's photo neither grants
        anything nor blocks that person's own consented videos. Only a cameo with nothing recorded after its
        registration is compared: a repeated registration (the same command id) finds one that was checked when
        it was new, and perhaps in use since, and leaves it as it is.
        """
        from provenance.stages import ModelLikenessMatcher

        cameo = self.app.cameo(cameo_id)
        if not cameo.is_active or cameo.version > 1:  # checked when it was new: a repeated registration
            return cameo.held
        self.catch_up()
        matcher = ModelLikenessMatcher(self.moderator_config())
        found = self.cameo_index.current(matcher.scorer).closest(str(cameo_id))
        if found is None or found[1] < matcher.threshold:
            return None
        self.app.hold_cameo(cameo_id, found[0], found[1])
        self.catch_up()
        return self.app.cameo(cameo_id).held

    def worker_handler(self, role: str) -> Callable[[EventEnvelope], None]:
        """The handler a worker role runs: the generator renders, moderation scores, signing signs and publishes,
        and the consent role re-checks consent after an unfollow."""
        if role == "consent":
            return self.consent_watch.handle_one
        if role not in WORKER_STAGES:
            from kernel.errors import InvalidInput

            raise InvalidInput(f"{role!r} is not a worker role (one of {', '.join([*WORKER_STAGES, 'consent'])})")
        names = WORKER_STAGES[role]
        workers = self.gate_workers(render="render" in names, moderate="moderation" in names, sign="signing" in names)
        handlers = [workers.handlers()[name] for name in names]

        def handle(event: EventEnvelope) -> None:
            for handler in handlers:
                handler(event)

        return handle

    @property
    def work_dir(self) -> Path:
        """Scratch space for stages (signing writes its output here before it goes into the blob store)."""
        return self.settings.home / "work"

    def close(self) -> None:
        if "app" in self.__dict__:
            self.app.close()
        if "store" in self.__dict__:
            self.store.engine.dispose()
        if "reads" in self.__dict__:
            self.reads.close()
        if "cameo_index" in self.__dict__:
            self.cameo_index.sealed.close()
        keystore = self.__dict__.get("keystore")
        if keystore is not None and self._keystore is None:
            keystore.close()


def event_store_env(settings: Settings) -> dict[str, str]:
    """`eventsourcing`'s own configuration, derived from ours."""
    if settings.event_store == "memory":
        return {"PERSISTENCE_MODULE": "eventsourcing.popo"}
    if settings.event_store == "sqlite":
        settings.home.mkdir(parents=True, exist_ok=True)
        return {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(settings.events_path)}
    from urllib.parse import unquote, urlparse

    from kernel.errors import require

    require("psycopg", "postgres")
    dsn = urlparse(settings.postgres_dsn or "")
    return {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": dsn.path.lstrip("/") or "provenance",
        "POSTGRES_HOST": dsn.hostname or "127.0.0.1",
        "POSTGRES_PORT": str(dsn.port or 5432),
        "POSTGRES_USER": unquote(dsn.username or "postgres"),
        "POSTGRES_PASSWORD": unquote(dsn.password or ""),
        "POSTGRES_CONNECT_TIMEOUT": "5",  # an unreachable server is said in seconds, not half a minute
        "APPLICATION_RECORDER_TOPIC": "provenance.postgres_log:PostgresLogRecorder",
    }
