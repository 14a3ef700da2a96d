"""SQL tasks: one query on PostgreSQL or SQLite, inputs as bind parameters, a typed output.

```python
from plait.ext.sql import SQLTask

adults = SQLTask(
    "people.adults",
    query="SELECT name, age FROM people WHERE age >= :min_age ORDER BY name",
    inputs={"min_age": int},
    output=list[Person],  # a dataclass: one record per row, its fields the columns
    connection_secret="warehouse",
)
```

- ``query``: ``:name`` marks a bind parameter taking the input ``name``; values are always
  passed to the driver as parameters, never written into the text. (For PostgreSQL the
  markers become psycopg's ``%(name)s``; ``::`` casts, quoted text and comments are left
  alone.)
- The connection comes from the secret ``connection_secret`` (``pip install 'plait[sql]'`` for
  PostgreSQL): ``postgresql://user:password@host:5432/db``, or ``sqlite:///absolute/path.db``.
- The output, by its declared type: a list of records (dataclasses or ``dict[str, Any]``: one
  per row, keyed by column), a list of scalars (the first column), a scalar (the first column
  of the first row; no row fails the attempt unless the type is optional), one record (the
  first row), a `plait.File` (every row written as CSV with a header, or JSON lines), or
  nothing (the statement runs; the transaction is committed).
- Connection failures are recoverable (retried within the task's ``retries``); errors in the
  query (syntax, a missing table, a constraint) are not. A terminated execution cancels the
  running query.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime
import decimal
import json
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

from plaitidl.core.v1 import tasks_pb2, types_pb2

from plait._errors import NonRetryableError
from plait._task import Timeout
from plait.ext._config import Problem
from plait.ext._task import PluginTask
from plait.ext._tasktype import RunContext, TaskFailedError, TaskType

_ST = types_pb2.SimpleType
_POSTGRES = ("postgresql://", "postgres://")
_SQLITE = "sqlite:"


@dataclasses.dataclass
class SQLConfig:
    """The configuration of a ``sql`` task (see the module)."""

    query: str
    connection_secret: str
    file_format: Literal["csv", "jsonl"] = "csv"


def _scan(query: str) -> Iterator[tuple[int, int, str]]:
    """``(start, end, name)`` of each ``:name`` marker outside quotes and comments."""
    i, n = 0, len(query)
    while i < n:
        c = query[i]
        if c in "'\"":
            end = query.find(c, i + 1)
            i = n if end < 0 else end + 1
        elif query.startswith("--", i):
            end = query.find("\n", i)
            i = n if end < 0 else end + 1
        elif query.startswith("/*", i):
            end = query.find("*/", i + 2)
            i = n if end < 0 else end + 2
        elif query.startswith("::", i):
            i += 2
        elif c == ":" and i + 1 < n and (query[i + 1].isalpha() or query[i + 1] == "_"):
            j = i + 1
            while j < n and (query[j].isalnum() or query[j] == "_"):
                j += 1
            yield i, j, query[i + 1 : j]
            i = j
        else:
            i += 1


def parameters(query: str) -> list[str]:
    """The bind parameters a query names, in order of first use."""
    return list(dict.fromkeys(name for _, _, name in _scan(query)))


def to_pyformat(query: str) -> str:
    """The query with psycopg's ``%(name)s`` markers (and every other ``%`` doubled)."""
    out: list[str] = []
    at = 0
    for start, end, name in _scan(query):
        out.append(query[at:start].replace("%", "%%"))
        out.append(f"%({name})s")
        at = end
    out.append(query[at:].replace("%", "%%"))
    return "".join(out)


def _kind(lt: types_pb2.LiteralType) -> str:
    """How rows become the output: records, column, scalar, row or file."""
    which = lt.WhichOneof("type")
    if which == "collection_type":
        inner = lt.collection_type
        row = inner.WhichOneof("type") in ("record_type", "map_value_type") or (
            inner.simple == _ST.SIMPLE_TYPE_STRUCT
        )
        return "records" if row else "column"
    if which == "blob":
        return "file"
    if which == "record_type" or (which == "simple" and lt.simple == _ST.SIMPLE_TYPE_STRUCT):
        return "row"
    if which == "union_type" and any(
        v.simple == _ST.SIMPLE_TYPE_NONE for v in lt.union_type.variants
    ):
        return "optional"
    return "scalar"


class SQL(TaskType[SQLConfig]):
    """The ``sql`` task type (see the module)."""

    name = "sql"
    config = SQLConfig

    def check(self, config: SQLConfig, template: tasks_pb2.TaskTemplate) -> list[Problem]:
        """The query is not empty and names inputs; the secret is named; one output at most."""
        out: list[Problem] = []
        if not config.query.strip():
            out.append(("custom.query", "must not be empty"))
        inputs = {v.name for v in template.interface.inputs.variables}
        for name in parameters(config.query):
            if name not in inputs:
                out.append(("custom.query", f"parameter :{name} names no input"))
        if config.connection_secret not in {s.name for s in template.metadata.secrets}:
            out.append(
                (
                    "custom.connection_secret",
                    f"secret {config.connection_secret!r} is not in metadata.secrets",
                )
            )
        if len(template.interface.outputs.variables) > 1:
            out.append(("interface.outputs", "a sql task has at most one output"))
        return out

    def run(self, config: SQLConfig, inputs: dict[str, Any], context: RunContext) -> Any:
        """Run the query in one transaction; shape the rows into the declared output."""
        url = context.secret(config.connection_secret)
        params = {name: _param(inputs[name]) for name in parameters(config.query)}
        if url.startswith(_POSTGRES):
            columns, rows = _postgres(url, config.query, params, context)
        elif url.startswith(_SQLITE):
            columns, rows = _sqlite(url, config.query, params, context)
        else:
            raise NonRetryableError(
                f"secret {config.connection_secret!r} is not a postgresql:// or sqlite: URL"
            )
        print(f"query returned {len(rows)} row(s)")  # to the attempt's log
        variables = context.template.interface.outputs.variables
        if not variables:
            return None
        return _shape(variables[0].type, columns, rows, config, context)


def _param(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return json.dumps(dataclasses.asdict(value))
    if isinstance(value, dict):
        return json.dumps(value)
    return value


def _plain(value: Any) -> Any:
    """A column value as the type engine takes it."""
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, memoryview):
        return bytes(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime.date) and not isinstance(value, datetime.datetime):
        return datetime.datetime(value.year, value.month, value.day, tzinfo=datetime.UTC)
    return value


Rows = list[tuple[Any, ...]]


def _watch(context: RunContext, cancel: Callable[[], None]) -> threading.Event:
    """Call `cancel` when the attempt is cancelled, until the returned event is set."""
    done = threading.Event()

    def watch() -> None:
        while not done.wait(0.1):
            if context.cancelled.is_set():
                cancel()
                return

    threading.Thread(target=watch, name="plait-sql-cancel", daemon=True).start()
    return done


def _postgres(
    url: str, query: str, params: dict[str, Any], context: RunContext
) -> tuple[list[str], Rows]:
    try:
        import psycopg
    except ImportError as exc:
        raise NonRetryableError(
            f"PostgreSQL needs the sql extra (pip install 'plait[sql]'): {exc}"
        ) from None
    try:
        conn = psycopg.connect(url, connect_timeout=max(1, int(context.remaining(30))))
    except psycopg.OperationalError as exc:
        raise TaskFailedError("ConnectionError", f"cannot connect to PostgreSQL: {exc}") from None
    done = _watch(context, conn.cancel_safe)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(to_pyformat(query), params)
            columns = [d.name for d in cur.description or ()]
            rows = [tuple(r) for r in cur.fetchall()] if cur.description else []
    except psycopg.errors.QueryCanceled:
        raise TaskFailedError("Cancelled", "the query was cancelled") from None
    except psycopg.OperationalError as exc:
        raise TaskFailedError("DatabaseUnavailable", str(exc)) from None
    except psycopg.Error as exc:
        raise TaskFailedError(type(exc).__name__, str(exc), recoverable=False) from None
    finally:
        done.set()
        conn.close()
    return columns, rows


def _sqlite(
    url: str, query: str, params: dict[str, Any], context: RunContext
) -> tuple[list[str], Rows]:
    path = url.removeprefix(_SQLITE)
    if path.startswith("//"):
        path = path[2:]  # sqlite:///abs/path.db
    timeout = context.remaining(30)
    try:
        conn = sqlite3.connect(path, timeout=timeout, isolation_level="DEFERRED")
    except sqlite3.Error as exc:
        raise TaskFailedError("ConnectionError", f"cannot open {path}: {exc}") from None
    done = _watch(context, conn.interrupt)
    try:
        with conn:
            cur = conn.execute(query, params)
            columns = [d[0] for d in cur.description or ()]
            rows = [tuple(r) for r in cur.fetchall()] if cur.description else []
    except sqlite3.OperationalError as exc:
        text = str(exc)
        recoverable = "locked" in text or "busy" in text or "unable to open" in text
        code = "Cancelled" if "interrupted" in text else "OperationalError"
        raise TaskFailedError(code, text, recoverable=recoverable or code == "Cancelled") from None
    except sqlite3.Error as exc:
        raise TaskFailedError(type(exc).__name__, str(exc), recoverable=False) from None
    finally:
        done.set()
        conn.close()
    return columns, rows


def _shape(
    lt: types_pb2.LiteralType, columns: list[str], rows: Rows, config: SQLConfig, ctx: RunContext
) -> Any:
    kind = _kind(lt)
    records = [{c: _plain(v) for c, v in zip(columns, row, strict=True)} for row in rows]
    if kind == "records":
        return records
    if kind == "column":
        return [_plain(row[0]) for row in rows]
    if kind == "file":
        return _write(ctx.output_dir(), columns, records, config.file_format)
    if not rows:
        if kind == "optional":
            return None
        raise NonRetryableError("the query returned no rows, and its output is not optional")
    if kind == "row":
        return records[0]
    return _plain(rows[0][0])


def _write(folder: Path, columns: list[str], records: list[dict[str, Any]], fmt: str) -> str:
    path = folder / f"result.{fmt}"
    with open(path, "w", newline="") as fh:
        if fmt == "csv":
            writer = csv.DictWriter(fh, fieldnames=columns)
            writer.writeheader()
            writer.writerows(records)
        else:
            for r in records:
                fh.write(json.dumps(r, default=str) + "\n")
    return str(path)


class SQLTask(PluginTask):
    """A task that runs one SQL query (see `plait.ext.sql`).

    Args:
        name: The registered name.
        query: The query; ``:name`` bind parameters take inputs.
        connection_secret: The secret holding the connection URL.
        inputs: Input names and types (the query's parameters).
        output: The output's type: records, a column, a scalar, a row, a `File`, or None.
        file_format: ``csv`` or ``jsonl``, for a `File` output.
        retries: Extra attempts after recoverable failures (connection errors).
        timeout: Limit per attempt (a running query is cancelled).
        cache: Whether outputs are cached by inputs.
        cache_version: Part of the cache key.
        queue: The worker queue, when workers serve ``sql``.
    """

    # A public constructor of keyword-only options: see `PluginTask`.
    def __init__(  # noqa: PLR0913
        self,
        name: str,
        query: str,
        *,
        connection_secret: str,
        inputs: dict[str, Any] | None = None,
        output: Any = None,
        file_format: Literal["csv", "jsonl"] = "csv",
        retries: int = 0,
        timeout: Timeout = None,
        cache: bool = False,
        cache_version: str = "",
        queue: str = "default",
    ) -> None:
        config = SQLConfig(
            query=query, connection_secret=connection_secret, file_format=file_format
        )
        super().__init__(
            SQL, name, config, inputs=inputs, output=output, secrets=[connection_secret],
            retries=retries, timeout=timeout, cache=cache, cache_version=cache_version,
            queue=queue,
        )  # fmt: skip


__all__ = ["SQL", "SQLConfig", "SQLTask", "parameters", "to_pyformat"]
