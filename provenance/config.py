"""Configuration from `PROVENANCE_*` environment variables, with defaults that work with nothing set.

Only this module reads the environment; everything else receives a `Settings`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from kernel.errors import InvalidInput
from projections.database import DATABASE_URLS

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
    kafka_partitions: int = 6
    """Partitions of the event topic when it is created: the most replicas a consumer group can use."""
    log_level: str = "INFO"
    log_format: Literal["text", "json"] = "text"
    max_render_cost: int = 576 * 1024 * 24 * 30
    """The most pixels x frames one request may ask the renderer for (576x1024, 24 fps, 30 s by default)."""
    tsa_url: str | None = None
    """An RFC 3161 time-stamp authority: every signature then carries a trusted time, so a file stays valid
    after its signing certificate expires. Set, the signing gate never signs without a time-stamp."""
    api_rate: int = 20
    """Requests per second one token (or one anonymous address) may make to the HTTP service, in bursts of 2x."""
    api_max_queued: int = 4
    """The most of one person's requests the render queue holds before the HTTP service refuses another (429)."""
    api_max_queue: int = 256
    """The most requests the render queue holds, everybody's together, before the HTTP service refuses another
    (503): a bound on the backlog that accounts made for the purpose cannot push past."""
    api_connections_per_address: int = 50
    """Connections one client address may hold open to the HTTP service at once (`provenance.api.connections`);
    behind a reverse proxy, whose connections all come from its address, as many as the proxy opens."""
    api_max_upload: int = 512 * 2**20
    """The largest file `POST /verify` and `/matches/byContent` accept, in bytes."""
    api_cors_origins: tuple[str, ...] = ()
    """Origins whose browser scripts may call the service; none by default (CORS off)."""
    api_open_signup: bool = True
    """Whether anyone may create a member account (`POST /people`); otherwise only an administrator."""

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
    def exported_videos(self) -> Path:
        """Where the command line gives published files their names (`<video id>.mp4`)."""
        return self.home / "videos"

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
        password = get("POSTGRES_PASSWORD")
        home = Path(get("HOME") or default_home()).expanduser()
        if home.exists() and not home.is_dir():
            raise InvalidInput(f"PROVENANCE_HOME names {home}, which is not a directory")
        return cls(
            home=home,
            event_store=store,  # type: ignore[arg-type]
            postgres_dsn=_with_password(get("POSTGRES_DSN"), password),
            projections_url=_with_password(_database_url("PROJECTIONS_URL", get("PROJECTIONS_URL")), password),
            keys_url=_with_password(_database_url("KEYS_URL", get("KEYS_URL")), password),
            kafka_bootstrap=_kafka_bootstrap(get("KAFKA_BOOTSTRAP")),
            kafka_topic=_kafka_topic(get("KAFKA_TOPIC") or "provenance.events"),
            mode=mode,  # type: ignore[arg-type]
            signing_dir=_path(get("SIGNING_DIR")),
            tsa_url=_http_url("TSA_URL", get("TSA_URL")),
            trust_anchors=_path(get("TRUST_ANCHORS")),
            clip_weights=_path(get("CLIP_WEIGHTS")),
            clip_model=get("CLIP_MODEL") or "ViT-B-32",
            kafka_partitions=_positive_int("KAFKA_PARTITIONS", get("KAFKA_PARTITIONS"), cls.kafka_partitions),
            log_level=_log_level(get("LOG_LEVEL")),
            log_format=_log_format(get("LOG_FORMAT")),
            max_render_cost=_positive_int("MAX_RENDER_COST", get("MAX_RENDER_COST"), cls.max_render_cost),
            api_rate=_positive_int("API_RATE", get("API_RATE"), cls.api_rate),
            api_max_queued=_positive_int("API_MAX_QUEUED", get("API_MAX_QUEUED"), cls.api_max_queued),
            api_max_queue=_positive_int("API_MAX_QUEUE", get("API_MAX_QUEUE"), cls.api_max_queue),
            api_connections_per_address=_positive_int(
                "API_CONNECTIONS_PER_ADDRESS", get("API_CONNECTIONS_PER_ADDRESS"), cls.api_connections_per_address
            ),
            api_max_upload=_positive_int("API_MAX_UPLOAD", get("API_MAX_UPLOAD"), cls.api_max_upload),
            api_cors_origins=tuple(o.strip() for o in (get("API_CORS_ORIGINS") or "").split(",") if o.strip()),
            api_open_signup=_flag("API_OPEN_SIGNUP", get("API_OPEN_SIGNUP"), cls.api_open_signup),
        )


_KAFKA_TOPIC = re.compile(r"[A-Za-z0-9._-]{1,249}")
_NUMBER = re.compile(r"[0-9]{1,18}")
"""A number in the environment: ASCII digits only (`str.isdigit` takes superscripts, which `int` refuses), and
short enough that `int` never meets its limit for a string (a 64-bit integer besides)."""
_PORT = re.compile(r"[0-9]{1,5}")


def _kafka_topic(value: str) -> str:
    """A name Kafka takes for a topic (a broker refuses any other, and a role would wait for it for ever)."""
    if not _KAFKA_TOPIC.fullmatch(value) or value in (".", ".."):
        raise InvalidInput(f"PROVENANCE_KAFKA_TOPIC must be 1 to 249 letters, digits, '.', '_' or '-', not {value!r}")
    return value


def _kafka_bootstrap(value: str | None) -> str | None:
    """`host:port[,host:port...]`, each port a number (a client would fail on a malformed one much later)."""
    if value is None:
        return None
    for entry in value.split(","):
        host, _, port = entry.strip().rpartition(":")
        if not host or not _PORT.fullmatch(port) or not 0 < int(port) < 65536:
            raise InvalidInput(f"PROVENANCE_KAFKA_BOOTSTRAP must be host:port[,host:port...]; {entry.strip()!r} is not")
    return value


def _path(value: str | None) -> Path | None:
    return Path(value).expanduser() if value else None


def _positive_int(name: str, value: str | None, default: int) -> int:
    if value is None:
        return default
    if not _NUMBER.fullmatch(value) or int(value) <= 0:
        shown = value if len(value) <= 40 else f"{value[:40]}... ({len(value)} characters)"
        raise InvalidInput(
            f"PROVENANCE_{name} must be a positive whole number of at most 18 digits (0-9), not {shown!r}"
        )
    return int(value)


def _database_url(name: str, value: str | None) -> str | None:
    """A SQLite file or a PostgreSQL database: what the read models (or the likeness keys) are kept in."""
    if value is None:
        return None
    if not value.startswith(DATABASE_URLS):
        raise InvalidInput(
            f"PROVENANCE_{name} must be a sqlite:///PATH or postgresql:// URL, not {value.split('://')[0]!r}://..."
        )
    return value


def _http_url(name: str, value: str | None) -> str | None:
    if value is None:
        return None
    if not value.startswith(("http://", "https://")) or any(c.isspace() for c in value):
        raise InvalidInput(f"PROVENANCE_{name} must be an http:// or https:// URL, not {value!r}")
    return value


def _flag(name: str, value: str | None, default: bool) -> bool:
    if value is None:
        return default
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise InvalidInput(f"PROVENANCE_{name} must be true or false, not {value!r}")


def _log_level(value: str | None) -> str:
    level = (value or "INFO").upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise InvalidInput(f"PROVENANCE_LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR, not {value!r}")
    return level


def _log_format(value: str | None) -> Literal["text", "json"]:
    if value in (None, "text"):
        return "text"
    if value == "json":
        return "json"
    raise InvalidInput(f"PROVENANCE_LOG_FORMAT must be text or json, not {value!r}")


def _with_password(url: str | None, password: str | None) -> str | None:
    """The URL with `PROVENANCE_POSTGRES_PASSWORD` put in, percent-encoded, where it names a user but no password.

    A password pasted into a URL by hand breaks on `@`, `/` or `%`; given apart, any password works.
    """
    if not url or not password or "://" not in url:
        return url
    scheme, _, rest = url.partition("://")
    credentials, at, location = rest.rpartition("@")
    if not at or ":" in credentials:
        return url
    from urllib.parse import quote

    return f"{scheme}://{credentials}:{quote(password, safe='')}@{location}"
