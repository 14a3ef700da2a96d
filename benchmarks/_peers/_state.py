"""Where a peer keeps its state during the bench, fresh for every run.

Every run starts on empty state, as every plait run starts on an empty data dir, but with the
peer's schema already made: a peer that creates its database with migrations (Prefect's
ephemeral server, DBOS) is run once first, untimed, and each run starts from a copy of what
that run left (plait's start-up figure is likewise taken after a warm-up run). DBOS's
PostgreSQL server (private, durable settings, as embedded-pg's) serves every DBOS run of the
bench; its CPU time is added to each run's.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks._peers import Peer

SQLITE = "plait-bench-dbos.sqlite"


def base_env() -> dict[str, str]:
    """The bench's environment less what would point a peer elsewhere (a Prefect API, a
    running Ray cluster, a DBOS database)."""
    skip = ("PREFECT_", "VIRTUAL_ENV", "RAY_ADDRESS", "RAY_AUTH_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(skip)}
    env.pop("PLAIT_BENCH_DBOS_URL", None)
    env["RAY_USAGE_STATS_ENABLED"] = "0"  # no usage report: this machine reaches no such service
    return env


class PeerState:
    """One peer's state over the bench: a temp folder, a database server, a migrated template.

    Args:
        peer: The peer.
        dbos_db: ``postgres`` (a private server) or ``sqlite``, for DBOS.
        log: Progress lines.
    """

    def __init__(self, peer: Peer, dbos_db: str, log: Callable[[str], None]) -> None:
        self.peer = peer
        self.log = log
        self.root = Path(tempfile.mkdtemp(prefix=f"plait-bench-{peer.name}-"))
        self.pg: Any = None
        self.template: str | None = None  # a database name or a folder, per peer
        self.runs = 0
        if peer.name == "dbos" and dbos_db == "postgres":
            self.pg = _start_postgres(log)

    def server_cpu(self) -> float:
        """CPU seconds the peer's database server has used so far (0 without one)."""
        return float(self.pg.cpu_seconds()) if self.pg is not None else 0.0

    def fresh(self, *, for_template: bool = False) -> tuple[dict[str, str], Path]:
        """(environment, working folder) of a run on fresh state (a copy of the template when
        there is one); `for_template`: the state the template is made in."""
        self.runs += 1
        folder = self.root / ("template" if for_template else f"run-{self.runs}")
        folder.mkdir()
        env = base_env()
        if self.peer.name == "prefect":
            home = folder / "prefect"
            if self.template and not for_template:
                shutil.copytree(self.template, home)
            # Its ephemeral server gets more than its default 20 s to start: on a busy 2-core
            # machine its imports alone can take that long, and its start is timed anyway.
            env.update(
                PREFECT_HOME=str(home),
                PREFECT_LOGGING_LEVEL="WARNING",
                PREFECT_SERVER_ANALYTICS_ENABLED="false",
                PREFECT_UI_ENABLED="false",
                PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="180",
            )
            if for_template:
                self.template = str(home)
        elif self.peer.name == "dbos":
            env["PLAIT_BENCH_DBOS_URL"] = self._dbos_url(folder, for_template)
        elif self.peer.name == "ray":
            # A new local cluster turns on token authentication and, with no token given,
            # writes one to ~/.ray/auth_token, which every later `ray start` on the machine
            # then adopts: the run gets a token of its own instead, and leaves no file.
            env["RAY_AUTH_TOKEN"] = uuid.uuid4().hex
        return env, folder

    def _dbos_url(self, folder: Path, for_template: bool) -> str:
        if self.pg is None:
            if self.template and not for_template:
                shutil.copy(self.template, folder / SQLITE)
            if for_template:
                self.template = str(folder / SQLITE)
            return f"sqlite:///{folder / SQLITE}"
        import psycopg

        name = f"dbos_{uuid.uuid4().hex[:12]}"
        source = self.template if self.template and not for_template else "template0"
        with psycopg.connect(self.pg.url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{source}"')
        if for_template:
            self.template = name
        return str(self.pg.database_url(name))

    def done(self, folder: Path) -> None:
        """A run is over: its folder goes (its database stays until the server stops)."""
        if self.template is None or not self.template.startswith(str(folder)):
            shutil.rmtree(folder, ignore_errors=True)

    def drop_template(self) -> None:
        """The warm-up failed: runs start on empty state, making their schema themselves."""
        self.template = None

    def close(self) -> None:
        """Stop the server and delete every folder."""
        if self.pg is not None:
            self.pg.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def _start_postgres(log: Callable[[str], None]) -> Any:
    from tests.support.postgres import PostgresUnavailableError, PrivatePostgres

    # Durable, as a production server (fsync and synchronous commits on), as embedded-pg's.
    pg = PrivatePostgres({"max_connections": "200"})
    try:
        pg.start()
    except PostgresUnavailableError as exc:
        pg.stop()
        log(f"    no PostgreSQL ({exc}); DBOS on SQLite")
        return None
    return pg
