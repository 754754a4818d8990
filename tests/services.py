"""Real PostgreSQL and Kafka servers for the test suite.

Integration tests run against the servers users run, not fakes. Each server starts the first time a
test asks for it, lives for the whole session, and is stopped (its temp dir and logs removed) when the
session ends, also when tests fail. Servers are also told to stop if the pytest process dies, so none
outlives a killed run.

PROVENANCE_TEST_POSTGRES_DSN (a postgresql:// URL) and PROVENANCE_TEST_KAFKA_BOOTSTRAP (host:port)
point the suite at existing servers instead. A server that cannot be had on this machine (no binaries,
no Java) skips the tests that need it, except under CI (env var CI set), where it is an error: CI is
meant to have every server, and a silent skip there would hide lost coverage.
"""

from __future__ import annotations

import base64
import functools
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn
from urllib.parse import urlsplit, urlunsplit

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
KAFKA_FETCH_SCRIPT = REPO_ROOT / "scripts" / "kafka" / "fetch"
POSTGRES_DSN_ENV = "PROVENANCE_TEST_POSTGRES_DSN"
KAFKA_BOOTSTRAP_ENV = "PROVENANCE_TEST_KAFKA_BOOTSTRAP"
START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 60.0
MIN_JAVA_MAJOR = 17


class ServiceError(Exception):
    """A server that should run did not start or stop; the message carries the tail of its log."""


def unavailable(reason: str) -> NoReturn:
    """Skip the asking test, or fail it under CI where every server is expected to be installed."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set, so a missing service is an error)", pytrace=False)
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def log_tail(path: Path, lines: int = 30) -> str:
    """The log's first error lines (the cause, often long scrolled away) and its last lines."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return f"(no log at {path})"
    all_lines = text.splitlines()
    errors = [line for line in all_lines[:-lines] if re.search(r"\b(ERROR|FATAL|PANIC)\b", line)][:5]
    head = f"first error lines of {path}:\n" + "\n".join(errors) + "\n" if errors else ""
    tail = all_lines[-lines:]
    return f"{head}last {len(tail)} lines of {path}:\n" + "\n".join(tail)


@dataclass(frozen=True)
class RunAs:
    """An unprivileged account for servers that refuse to run as root (PostgreSQL)."""

    name: str
    uid: int
    gid: int


def unprivileged_account() -> RunAs | None:
    """None when already unprivileged; otherwise `postgres` if it exists, else `nobody`."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        return RunAs(name=name, uid=entry.pw_uid, gid=entry.pw_gid)
    raise ServiceError("running as root and neither a 'postgres' nor a 'nobody' account exists")


def make_workdir(prefix: str, owner: RunAs | None = None) -> Path:
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    if owner is not None:
        os.chown(workdir, owner.uid, owner.gid)
    return workdir


@functools.cache
def parent_death_prefix() -> tuple[str, ...]:
    """`setpriv --pdeathsig TERM`, so a server gets SIGTERM if pytest dies without tearing down."""
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return ()
    usage = subprocess.run([setpriv, "--help"], capture_output=True, text=True, check=False).stdout
    return (setpriv, "--pdeathsig", "TERM", "--") if "--pdeathsig" in usage else ()


def server_env() -> dict[str, str]:
    """The caller's environment minus libpq/Kafka variables that would override explicit settings."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("PG", "KAFKA_"))}


def spawn(argv: list[str], log_path: Path, cwd: Path, run_as: RunAs | None = None) -> subprocess.Popen[bytes]:
    """Start a server in its own session (a Ctrl-C reaches pytest, which stops it in order)."""
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            [*parent_death_prefix(), *argv],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=server_env(),
            start_new_session=True,
            user=run_as.uid if run_as else None,
            group=run_as.gid if run_as else None,
            extra_groups=[] if run_as else None,
        )


def terminate(process: subprocess.Popen[bytes], sig: signal.Signals, timeout: float = STOP_TIMEOUT_S) -> None:
    if process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# --- PostgreSQL ---------------------------------------------------------------------------------


def find_postgres_bindir() -> Path | None:
    """A directory holding both initdb and postgres: PATH first, then Debian's versioned dirs."""
    candidates: list[Path] = []
    initdb = shutil.which("initdb")
    if initdb:
        candidates += [Path(initdb).parent, Path(initdb).resolve().parent]

    def version_of(bindir: Path) -> tuple[int, ...]:
        return tuple(int(part) for part in re.findall(r"\d+", bindir.parent.name))

    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=version_of, reverse=True)
    for bindir in candidates:
        if (bindir / "initdb").is_file() and (bindir / "postgres").is_file():
            return bindir
    return None


def with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{database}"))


def check_postgres_url(url: str) -> str:
    if urlsplit(url).scheme not in ("postgresql", "postgres"):
        raise ServiceError(f"{POSTGRES_DSN_ENV} must be a postgresql:// URL, got {url!r}")
    return url


def create_database(server_url: str, database: str) -> str:
    """Create `database` on the server behind `server_url`; return the URL that points at it."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    return with_database(server_url, database)


def drop_database(server_url: str, database: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database)))


@dataclass
class PostgresServer:
    """A throwaway cluster: trust auth, loopback only, no fsync (durability is not under test here)."""

    bindir: Path
    workdir: Path
    run_as: RunAs | None = None
    superuser: str = "postgres"
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.workdir / "postgres.log"

    @property
    def admin_url(self) -> str:
        return f"postgresql://{self.superuser}@127.0.0.1:{self.port}/postgres"

    def start(self, timeout: float = START_TIMEOUT_S) -> None:
        data = self.workdir / "data"
        initdb = subprocess.run(
            [
                str(self.bindir / "initdb"),
                *("-D", str(data), "-U", self.superuser, "-A", "trust", "-E", "UTF8", "--locale=C"),
                "--no-sync",
            ],
            capture_output=True,
            text=True,
            cwd=self.workdir,
            env=server_env(),
            user=self.run_as.uid if self.run_as else None,
            group=self.run_as.gid if self.run_as else None,
            extra_groups=[] if self.run_as else None,
            check=False,
        )
        if initdb.returncode != 0:
            raise ServiceError(f"initdb failed ({initdb.returncode}):\n{initdb.stdout}{initdb.stderr}")
        settings = {
            "listen_addresses": "127.0.0.1",
            "port": str(self.port),
            "unix_socket_directories": str(self.workdir),
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
        }
        argv = [str(self.bindir / "postgres"), "-D", str(data)]
        for key, value in settings.items():
            argv += ["-c", f"{key}={value}"]
        self.process = spawn(argv, self.log_path, cwd=self.workdir, run_as=self.run_as)
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float) -> None:
        import psycopg

        deadline = time.monotonic() + timeout
        while True:
            assert self.process is not None
            if self.process.poll() is not None:
                raise ServiceError(f"postgres exited with {self.process.returncode}\n{log_tail(self.log_path)}")
            try:
                with psycopg.connect(self.admin_url, connect_timeout=2) as conn:
                    conn.execute("SELECT 1")
                return
            except psycopg.OperationalError as exc:
                if time.monotonic() > deadline:
                    raise ServiceError(
                        f"postgres on port {self.port} not ready after {timeout:.0f} s: {exc}\n"
                        f"{log_tail(self.log_path)}"
                    ) from exc
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process is not None:
            # SIGINT is PostgreSQL's "fast" shutdown: it does not wait for clients to disconnect.
            terminate(self.process, signal.SIGINT)


# --- Kafka --------------------------------------------------------------------------------------


def find_java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    java = str(Path(java_home) / "bin" / "java") if java_home else shutil.which("java")
    if not java or not Path(java).is_file():
        unavailable("Java 17+ not found (needed to run Kafka); apt-get install default-jre-headless")
    probe = subprocess.run([java, "-version"], capture_output=True, text=True, check=False)
    found = re.search(r'version "(\d+)(?:\.(\d+))?', probe.stderr)
    major = 0 if found is None else int(found.group(2) if found.group(1) == "1" else found.group(1))
    if major < MIN_JAVA_MAJOR:
        unavailable(f"Kafka 4 needs Java {MIN_JAVA_MAJOR}+, {java} is Java {major or 'unknown'}")
    return java


def fetch_kafka() -> Path:
    """The cached broker directory (with libs/), resolved from Maven Central on first use."""
    fetch = subprocess.run([str(KAFKA_FETCH_SCRIPT)], capture_output=True, text=True, check=False)
    if fetch.returncode != 0:
        last_line = (fetch.stderr.strip().splitlines() or [f"{KAFKA_FETCH_SCRIPT} exited with {fetch.returncode}"])[-1]
        unavailable(f"could not fetch Kafka: {last_line}")
    return Path(fetch.stdout.strip().splitlines()[-1])


def random_cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes in unpadded URL-safe base64, not starting with '-'."""
    while True:
        encoded = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not encoded.startswith("-"):
            return encoded


LOG4J2_PROPERTIES = """\
status = warn
appender.out.type = Console
appender.out.name = out
appender.out.target = SYSTEM_OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = out
logger.request.name = kafka.request.logger
logger.request.level = WARN
"""


@dataclass
class KafkaBroker:
    """A single-node KRaft broker on loopback. stop() and start() keep its ports and data."""

    kafka_home: Path
    java: str
    workdir: Path
    port: int = field(default_factory=free_port)
    controller_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    formatted: bool = False

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "broker.log"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def server_properties(self) -> str:
        settings = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{self.controller_port}",
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(self.workdir / "data"),
            "num.partitions": "3",
            "auto.create.topics.enable": "false",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "3",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "3",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
        }
        return "".join(f"{key}={value}\n" for key, value in settings.items())

    def java_command(self, main_class: str, *args: str, heap: str = "512m") -> list[str]:
        return [
            self.java,
            f"-Xmx{heap}",
            "-XX:+ExitOnOutOfMemoryError",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.workdir / 'log4j2.properties'}",
            "-cp",
            str(self.kafka_home / "libs" / "*"),
            main_class,
            *args,
        ]

    def format_storage(self) -> None:
        (self.workdir / "server.properties").write_text(self.server_properties())
        (self.workdir / "log4j2.properties").write_text(LOG4J2_PROPERTIES)
        tool = self.java_command(
            "kafka.tools.StorageTool",
            *("format", "-t", random_cluster_id(), "-c", str(self.workdir / "server.properties")),
            heap="256m",
        )
        result = subprocess.run(tool, capture_output=True, text=True, cwd=self.workdir, check=False)
        if result.returncode != 0:
            raise ServiceError(f"Kafka storage format failed ({result.returncode}):\n{result.stdout}{result.stderr}")
        self.formatted = True

    def start(self, timeout: float = START_TIMEOUT_S) -> None:
        if self.running:
            return
        if not self.formatted:
            self.format_storage()
        argv = self.java_command("kafka.Kafka", str(self.workdir / "server.properties"))
        self.process = spawn(argv, self.log_path, cwd=self.workdir)
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float) -> None:
        """Ready means a real client can list topics, not merely that the port accepts connections."""
        from kafka import KafkaAdminClient
        from kafka.errors import KafkaConfigurationError, KafkaError

        deadline = time.monotonic() + timeout
        while True:
            assert self.process is not None
            if self.process.poll() is not None:
                raise ServiceError(f"Kafka exited with {self.process.returncode}\n{log_tail(self.log_path)}")
            try:
                admin = KafkaAdminClient(
                    bootstrap_servers=self.bootstrap, request_timeout_ms=5000, bootstrap_timeout_ms=2000
                )
                try:
                    admin.list_topics()
                finally:
                    admin.close()
                return
            except KafkaConfigurationError:
                raise
            except (KafkaError, OSError) as exc:
                if time.monotonic() > deadline:
                    raise ServiceError(
                        f"Kafka at {self.bootstrap} not ready after {timeout:.0f} s: {exc!r}\n{log_tail(self.log_path)}"
                    ) from exc
            time.sleep(0.2)

    def stop(self) -> None:
        """Graceful shutdown (SIGTERM), as an operator's restart would do."""
        if self.process is not None:
            terminate(self.process, signal.SIGTERM)
            if self.process.returncode not in (0, -signal.SIGTERM, 143):
                raise ServiceError(f"Kafka stopped with {self.process.returncode}\n{log_tail(self.log_path)}")


# --- fixtures -----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres_dsn() -> Iterator[str]:
    """URL of an empty database on a PostgreSQL server that lives for the session."""
    external = os.environ.get(POSTGRES_DSN_ENV)
    if external:
        yield check_postgres_url(external)
        return
    bindir = find_postgres_bindir()
    if bindir is None:
        unavailable(
            "PostgreSQL server binaries (initdb, postgres) not found on PATH or in /usr/lib/postgresql/*/bin; "
            "apt-get install postgresql"
        )
    run_as = unprivileged_account()
    server = PostgresServer(bindir=bindir, workdir=make_workdir("provenance-pg-", owner=run_as), run_as=run_as)
    try:
        server.start()
        yield create_database(server.admin_url, "provenance_test")
    finally:
        try:
            server.stop()
        finally:
            shutil.rmtree(server.workdir, ignore_errors=True)


@pytest.fixture
def fresh_postgres_db(postgres_dsn: str) -> Iterator[str]:
    """URL of a new, empty database of its own for one test, dropped afterwards."""
    name = f"test_{uuid.uuid4().hex[:16]}"
    url = create_database(postgres_dsn, name)
    try:
        yield url
    finally:
        drop_database(postgres_dsn, name)


@pytest.fixture(scope="session")
def kafka_session_broker() -> Iterator[KafkaBroker]:
    java = find_java()
    broker = KafkaBroker(kafka_home=fetch_kafka(), java=java, workdir=make_workdir("provenance-kafka-"))
    try:
        broker.start()
        yield broker
    finally:
        try:
            broker.stop()
        finally:
            shutil.rmtree(broker.workdir, ignore_errors=True)


@pytest.fixture
def kafka_broker(request: pytest.FixtureRequest) -> Iterator[KafkaBroker]:
    """The session's broker, for tests that stop and restart it; it is running again after each test."""
    if os.environ.get(KAFKA_BOOTSTRAP_ENV):
        pytest.skip(f"{KAFKA_BOOTSTRAP_ENV} names an external broker, which tests cannot restart")
    broker: KafkaBroker = request.getfixturevalue("kafka_session_broker")
    broker.start()
    yield broker
    broker.start()


@pytest.fixture(scope="session")
def kafka_bootstrap(request: pytest.FixtureRequest) -> str:
    """host:port of a Kafka broker (auto-create of topics is off: create the topics you use)."""
    external = os.environ.get(KAFKA_BOOTSTRAP_ENV)
    if external:
        return external
    broker: KafkaBroker = request.getfixturevalue("kafka_session_broker")
    return broker.bootstrap


@pytest.fixture
def fresh_kafka_topic(kafka_bootstrap: str) -> Iterator[str]:
    """Name of a new three-partition topic of its own for one test, deleted afterwards."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from kafka.errors import KafkaError

    name = f"test-{uuid.uuid4().hex[:16]}"
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        admin.create_topics([NewTopic(name=name, num_partitions=3, replication_factor=1)])
    finally:
        admin.close()
    yield name
    # Unique names already isolate tests; deleting only keeps an external broker tidy, so a broker
    # that a test left unreachable costs a warning, not an error.
    try:
        admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        try:
            admin.delete_topics([name])
        finally:
            admin.close()
    except KafkaError as exc:
        warnings.warn(f"could not delete test topic {name}: {exc!r}", stacklevel=1)


@pytest.fixture(scope="session")
def kcat_path() -> str:
    """Path of kcat, an independent Kafka client, for checking what our code wrote to a topic."""
    path = shutil.which("kcat") or shutil.which("kafkacat")
    if path is None:
        unavailable("kcat not installed; apt-get install kcat")
    return path
