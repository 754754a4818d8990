"""Configuration from `PROVENANCE_*` environment variables, with defaults that work with nothing set.

Only this module reads the environment; everything else receives a `Settings`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from kernel.errors import InvalidInput

EventStoreKind = Literal["sqlite", "postgres", "memory"]
Mode = Literal["development", "production"]


def default_home() -> Path:
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data) / "provenance"


@dataclass(frozen=True)
class Settings:
    home: Path = field(default_factory=default_home)
    event_store: EventStoreKind = "sqlite"
    postgres_dsn: str | None = None
    projections_url: str | None = None
    keys_url: str | None = None
    kafka_bootstrap: str | None = None
    kafka_topic: str = "provenance.events"
    mode: Mode = "development"
    signing_dir: Path | None = None
    trust_anchors: Path | None = None
    clip_weights: Path | None = None
    clip_model: str = "ViT-B-32"
    max_render_cost: int = 576 * 1024 * 24 * 30
    """The most pixels x frames one request may ask the renderer for (576x1024, 24 fps, 30 s by default)."""

    @property
    def pki_directory(self) -> Path:
        """Signing chain, key and trust anchors (`provenance pki init` writes a development set here)."""
        return self.signing_dir or self.home / "pki"

    @property
    def trust_anchor_file(self) -> Path:
        return self.trust_anchors or self.pki_directory / "trust-anchors.pem"

    @property
    def blob_root(self) -> Path:
        return self.home / "blobs"

    @property
    def events_path(self) -> Path:
        return self.home / "events.db"

    @property
    def projections_database(self) -> str:
        return self.projections_url or f"sqlite:///{self.home / 'projections.db'}"

    @property
    def keys_database(self) -> str:
        return self.keys_url or f"sqlite:///{self.home / 'keys.db'}"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env

        def get(name: str) -> str | None:
            value = env.get(f"PROVENANCE_{name}")
            return value if value else None

        store = get("EVENT_STORE") or ("postgres" if get("POSTGRES_DSN") else "sqlite")
        if store not in ("sqlite", "postgres", "memory"):
            raise InvalidInput(f"PROVENANCE_EVENT_STORE must be sqlite, postgres or memory, not {store!r}")
        if store == "postgres" and not get("POSTGRES_DSN"):
            raise InvalidInput("PROVENANCE_EVENT_STORE=postgres needs PROVENANCE_POSTGRES_DSN")
        mode = get("MODE") or "development"
        if mode not in ("development", "production"):
            raise InvalidInput(f"PROVENANCE_MODE must be development or production, not {mode!r}")
        home = Path(get("HOME") or default_home()).expanduser()
        if home.exists() and not home.is_dir():
            raise InvalidInput(f"PROVENANCE_HOME names {home}, which is not a directory")
        return cls(
            home=home,
            event_store=store,  # type: ignore[arg-type]
            postgres_dsn=get("POSTGRES_DSN"),
            projections_url=get("PROJECTIONS_URL"),
            keys_url=get("KEYS_URL"),
            kafka_bootstrap=get("KAFKA_BOOTSTRAP"),
            kafka_topic=get("KAFKA_TOPIC") or "provenance.events",
            mode=mode,  # type: ignore[arg-type]
            signing_dir=_path(get("SIGNING_DIR")),
            trust_anchors=_path(get("TRUST_ANCHORS")),
            clip_weights=_path(get("CLIP_WEIGHTS")),
            clip_model=get("CLIP_MODEL") or "ViT-B-32",
            max_render_cost=_positive_int("MAX_RENDER_COST", get("MAX_RENDER_COST"), cls.max_render_cost),
        )


def _path(value: str | None) -> Path | None:
    return Path(value).expanduser() if value else None


def _positive_int(name: str, value: str | None, default: int) -> int:
    if value is None:
        return default
    if not value.isdigit() or int(value) <= 0:
        raise InvalidInput(f"PROVENANCE_{name} must be a positive whole number, not {value!r}")
    return int(value)
