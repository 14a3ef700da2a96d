"""A private PostgreSQL server for tests and benchmarks: `initdb` + `pg_ctl` in a temp dir.

The server listens on 127.0.0.1 on a free port, with its socket in its own folder, so it never
meets the machine's own clusters. As root it runs as the ``postgres`` user (``initdb`` refuses
root). It is stopped by the PID in its ``postmaster.pid``, even when a test fails.

Nothing is skipped: when PostgreSQL is not installed or does not start, `PrivatePostgres.start`
raises, and every test that needs it fails.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

# What a throwaway server needs: no fsync (its data dies with it), few connections.
TEST_SETTINGS = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",
    "shared_buffers": "128MB",
}


class PostgresUnavailableError(RuntimeError):
    """PostgreSQL is not installed, or the server did not start."""


def bindir() -> Path:
    """The folder of ``initdb``, ``pg_ctl`` and ``postgres`` (the newest installed version).

    Raises:
        PostgresUnavailableError: No PostgreSQL server is installed.
    """
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name)
    )
    for found in reversed(candidates):
        if (Path(found) / "initdb").exists():
            return Path(found)
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        path = Path(out.stdout.strip())
        if (path / "initdb").exists():
            return path
    raise PostgresUnavailableError(
        "PostgreSQL is not installed: no initdb in /usr/lib/postgresql/*/bin or pg_config "
        "--bindir (install it: apt-get install postgresql-15)"
    )


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped by its parent) is as good as gone.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


class PrivatePostgres:
    """One PostgreSQL server of our own.

    Args:
        settings: Server settings (``-c name=value``); `TEST_SETTINGS` by default.
        root: Where its folder is made (a new temp dir by default).

    Attributes:
        port: The TCP port it listens on (127.0.0.1).
        pid: The postmaster's PID once started.
        startup_seconds: How long initdb plus the start took.
    """

    def __init__(self, settings: dict[str, str] | None = None, root: Path | None = None) -> None:
        self.settings = dict(TEST_SETTINGS if settings is None else settings)
        if root is None and os.geteuid() == 0:
            # The server runs as the postgres user, who must reach its folder: $TMPDIR may be
            # under a folder only root can enter; /tmp never is.
            root = Path("/tmp")
        self.dir = Path(tempfile.mkdtemp(prefix="plait-pg-", dir=root))
        self.data = self.dir / "data"
        self.log = self.dir / "server.log"
        self.port = 0
        self.pid = 0
        self.startup_seconds = 0.0
        self._user: str | None = None

    @property
    def url(self) -> str:
        """The ``postgres`` database's URL (the superuser, no password, loopback only)."""
        return self.database_url("postgres")

    def database_url(self, name: str) -> str:
        """A URL of database `name` on this server."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def _as_owner(self, cmd: list[str]) -> list[str]:
        if self._user is None:
            return cmd
        runuser = shutil.which("runuser")
        if runuser:
            return [runuser, "-u", self._user, "--", *cmd]
        return ["su", self._user, "-s", "/bin/sh", "-c", " ".join(cmd)]

    def _run(self, cmd: list[str], what: str) -> None:
        proc = subprocess.run(
            self._as_owner(cmd), capture_output=True, text=True, check=False, timeout=120
        )
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip()[-2000:]
            raise PostgresUnavailableError(f"{what} failed ({proc.returncode}): {tail}")

    def start(self) -> PrivatePostgres:
        """initdb, then start the server and wait until it accepts connections.

        Raises:
            PostgresUnavailableError: Not installed, or it did not start.
        """
        t0 = time.monotonic()
        bins = bindir()
        if os.geteuid() == 0:
            # initdb refuses root: the server runs as the postgres user (Debian's package
            # creates it), in a folder that user owns.
            self._user = "postgres"
            try:
                entry = pwd.getpwnam(self._user)
            except KeyError:
                raise PostgresUnavailableError("running as root, but no 'postgres' user") from None
            os.chown(self.dir, entry.pw_uid, entry.pw_gid)
        self._run(
            [str(bins / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust",
             "--encoding=UTF8", "--locale=C", "--no-sync"],
            "initdb",
        )  # fmt: skip
        options = [f"-c listen_addresses=127.0.0.1 -c unix_socket_directories={self.dir}"]
        options += [f"-c {k}={v}" for k, v in self.settings.items()]
        for _ in range(5):  # the free port may be taken by the time the server binds it
            self.port = free_port()
            opts = " ".join([*options, f"-p {self.port}"])
            try:
                self._run(
                    [str(bins / "pg_ctl"), "start", "-w", "-t", "60", "-D", str(self.data),
                     "-l", str(self.log), "-o", opts],
                    "pg_ctl start",
                )  # fmt: skip
                break
            except PostgresUnavailableError:
                if "could not bind" not in self.server_log():
                    raise PostgresUnavailableError(
                        f"PostgreSQL did not start; its log:\n{self.server_log()[-3000:]}"
                    ) from None
        else:
            raise PostgresUnavailableError("PostgreSQL found no free port")
        self.pid = self._pid_from_file()
        self.startup_seconds = time.monotonic() - t0
        return self

    def restart(self) -> None:
        """Stop the server (fast: sessions are cut) and start it again on the same port."""
        self._run(
            [str(bindir() / "pg_ctl"), "restart", "-w", "-t", "60", "-m", "fast", "-D",
             str(self.data), "-l", str(self.log)],
            "pg_ctl restart",
        )  # fmt: skip
        self.pid = self._pid_from_file()

    def server_log(self) -> str:
        """What the server wrote to its log."""
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def _pid_from_file(self) -> int:
        try:
            return int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return 0

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the server by its PID (fast shutdown, then SIGKILL) and delete its folder."""
        pid = self.pid or self._pid_from_file()
        if pid and _pid_alive(pid):
            os.kill(pid, signal.SIGINT)  # fast shutdown: abort sessions, then exit
            deadline = time.monotonic() + timeout
            while _pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if _pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
                # Its children (backends, writers) die when they see the postmaster gone.
                while _pid_alive(pid) and time.monotonic() < deadline + 10:
                    time.sleep(0.05)
        self.pid = 0
        shutil.rmtree(self.dir, ignore_errors=True)

    def create_database(self, prefix: str = "t") -> str:
        """A new empty database; returns its URL."""
        import psycopg

        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
        return self.database_url(name)

    def drop_database(self, url: str) -> None:
        """Drop a database made by `create_database`, closing its sessions."""
        import psycopg

        name = url.rsplit("/", 1)[1]
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def cpu_seconds(self) -> float:
        """CPU time of the server so far: the postmaster, its live children, and the children
        that exited (reaped by the postmaster, so counted in its ``cutime``/``cstime``)."""
        if not self.pid:
            return 0.0
        tick = os.sysconf("SC_CLK_TCK")
        total = 0
        for pid in [self.pid, *_children(self.pid)]:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            # utime, stime, cutime, cstime are fields 14-17 of stat; 12-15 after the name.
            total += sum(int(f) for f in fields[11:15])
        return total / tick


def _children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


@contextlib.contextmanager
def private_postgres(settings: dict[str, str] | None = None) -> Iterator[PrivatePostgres]:
    """A started `PrivatePostgres`, stopped on exit (also when the body fails)."""
    server = PrivatePostgres(settings)
    try:
        yield server.start()
    finally:
        server.stop()


# What the session's server took to start, for the summary at the end of the run.
STARTUPS: list[str] = []


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PrivatePostgres]:
    """One private PostgreSQL server for the test session; fails (never skips) when it cannot
    be started."""
    with private_postgres() as server:
        STARTUPS.append(
            f"private PostgreSQL {bindir().parent.name} (initdb + pg_ctl start): "
            f"{server.startup_seconds:.2f} s"
        )
        yield server


@pytest.fixture
def postgres_url(postgres_server: PrivatePostgres) -> Iterator[str]:
    """A fresh database on the session's server, dropped after the test."""
    url = postgres_server.create_database()
    try:
        yield url
    finally:
        postgres_server.drop_database(url)
