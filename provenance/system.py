"""The composition root: the one place that wires settings, stores, read models and runners together."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property

from projections import ProjectionStore, open_store
from projections.queries import ReadModels
from provenance.application import ProvenanceApp
from provenance.config import Settings
from provenance.gates import GateWorkers
from provenance.runner import Consumer, EmbeddedRunner, ProjectionConsumer


class System:
    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings.from_env()

    @cached_property
    def app(self) -> ProvenanceApp:
        return ProvenanceApp(self.settings)

    @cached_property
    def store(self) -> ProjectionStore:
        self.settings.home.mkdir(parents=True, exist_ok=True)
        return open_store(self.settings.projections_database)

    @cached_property
    def reads(self) -> ReadModels:
        return ReadModels(self.store.engine)

    def runner(self, consumers: Sequence[Consumer] | None = None) -> EmbeddedRunner:
        return EmbeddedRunner(self.app, consumers if consumers is not None else [ProjectionConsumer(self.store)])

    def pipeline(self, workers: GateWorkers) -> EmbeddedRunner:
        """Projections and the given gate workers, fed from the log in this process."""
        return self.runner([ProjectionConsumer(self.store), *workers.consumers(self.store.engine)])

    def catch_up(self) -> int:
        """Bring the projections up to the head of the log (the CLI does this after every command)."""
        return self.runner().run_once()

    def close(self) -> None:
        if "app" in self.__dict__:
            self.app.close()
        if "store" in self.__dict__:
            self.store.engine.dispose()
