"""The blocking half of the SQLite store (connections, threads, migrations) and the async
helpers its methods use."""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import sqlite3
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Literal, TypeVar

from plait_engine.store.sqlite_schema import MIGRATIONS

_T = TypeVar("_T")
Synchronous = Literal["OFF", "NORMAL", "FULL", "EXTRA"]


class SqliteDb:
    """The blocking half: connections and SQL. Used only from the store's threads."""

    def __init__(self, path: str, synchronous: Synchronous) -> None:
        self.path = path
        self.synchronous = synchronous
        self.local = threading.local()
        self.all: list[sqlite3.Connection] = []
        self.lock = threading.Lock()

    def conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self.local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode survives a crash of the process (SIGKILL); FULL also survives
            # an OS crash or power loss, at the cost of an fsync per commit.
            conn.execute(f"PRAGMA synchronous={self.synchronous}")
            conn.execute("PRAGMA busy_timeout=10000")
            with self.lock:
                self.all.append(conn)
            self.local.conn = conn
        return conn

    def write(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run `fn` in one write transaction (BEGIN IMMEDIATE ... COMMIT)."""
        c = self.conn()
        c.execute("BEGIN IMMEDIATE")
        try:
            out = fn(c)
        except BaseException:
            c.execute("ROLLBACK")
            raise
        c.execute("COMMIT")
        return out

    def migrate(self) -> None:
        c = self.conn()
        c.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        current = int(c.execute("SELECT max(version) FROM schema_version").fetchone()[0] or 0)
        for version, script in enumerate(MIGRATIONS, start=1):
            if version > current:

                def step(c: sqlite3.Connection, script: str = script, v: int = version) -> None:
                    for statement in script.split(";"):
                        if statement.strip():
                            c.execute(statement)
                    c.execute("INSERT INTO schema_version (version) VALUES (?)", (v,))

                self.write(step)

    def close(self) -> None:
        with self.lock:
            for conn in self.all:
                conn.close()
            self.all.clear()


class SqliteBase:
    """Threads of its own for the file: one writer (SQLite has one anyway), one reader.

    Args:
        path: The database file (created with its folder when missing).
        synchronous: SQLite's ``synchronous`` level.
    """

    def __init__(self, path: str | Path, *, synchronous: Synchronous = "NORMAL") -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._db = SqliteDb(self.path, synchronous)
        self._writer = concurrent.futures.ThreadPoolExecutor(1, "plait-sqlite-w")
        self._reader = concurrent.futures.ThreadPoolExecutor(1, "plait-sqlite-r")
        self._writer.submit(self._db.migrate).result()

    async def _w(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._writer, functools.partial(self._db.write, fn))

    async def _r(self, sql: str, params: Iterable[Any] = ()) -> list[Any]:
        def read() -> list[Any]:
            return self._db.conn().execute(sql, tuple(params)).fetchall()

        return await asyncio.get_running_loop().run_in_executor(self._reader, read)

    async def _one(self, sql: str, params: Iterable[Any] = ()) -> Any:
        rows = await self._r(sql, params)
        return rows[0] if rows else None
