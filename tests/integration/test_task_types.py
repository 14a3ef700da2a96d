"""Task types as plugins, on the embedded engine: HTTP calls against a real local web service,
SQL queries on real SQLite files and a private PostgreSQL server, secrets kept out of what
the engine records, and `custom` checked at the door.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format
from plait import File, workflow
from plait._embedded import RunOptions, RunResult, run
from plait._serialize import outputs_to_python
from plait.ext.http import HTTPTask
from plait.ext.sql import SQLTask, parameters, to_pyformat
from plait_engine.app import build_engine
from plait_engine.config import EngineConfig
from plaitidl.core.v1 import errors_pb2, execution_pb2
from plaitidl.core.v1.literals_pb2 import LiteralMap

from tests.support.engines import embedded_engine
from tests.support.s3 import S3Server
from tests.support.webservice import WebService, web_service

TOKEN = "tok-3f9a1c77e2"
NP = execution_pb2.NodePhase


@dataclasses.dataclass
class User:
    name: str
    id: int


@dataclasses.dataclass
class Item:
    name: str
    qty: int


@dataclasses.dataclass
class Receipt:
    accepted: int
    total: int
    names: list[str]


get_user = HTTPTask(
    "tt.get_user",
    "http://127.0.0.1:{port}/users/{uid}",
    inputs={"port": int, "uid": int},
    output=User,
    output_path="data.user",
)


def _report(label: str, *, retries: int = 0, timeout_seconds: float = 30.0) -> HTTPTask:
    return HTTPTask(
        f"tt.report_{label}",
        "http://127.0.0.1:{port}/report/" + label,
        method="POST",
        headers={"Authorization": "Bearer {secret:api-token}", "X-Caller": "plait {port}"},
        inputs={"port": int, "total": int, "items": list[Item]},
        output=Receipt,
        secrets=["api-token"],
        retries=retries,
        timeout_seconds=timeout_seconds,
    )


report_ok = _report("ok")
report_flaky = _report("flaky", retries=2)
report_missing = _report("missing", retries=2)
report_slow = _report("slow", timeout_seconds=1.0)
report_forbidden = _report("forbidden")


@workflow
def lookup_and_report(port: int, uid: int) -> tuple[User, Receipt]:
    user = get_user(port=port, uid=uid)
    return user, report_ok(port=port, total=uid, items=[Item("a", 1), Item("b", 2)])


@workflow
def flaky(port: int) -> Receipt:
    receipt: Receipt = report_flaky(port=port, total=1, items=[])
    return receipt


@workflow
def missing(port: int) -> Receipt:
    receipt: Receipt = report_missing(port=port, total=1, items=[])
    return receipt


@workflow
def slow(port: int) -> Receipt:
    receipt: Receipt = report_slow(port=port, total=1, items=[])
    return receipt


@workflow
def forbidden(port: int) -> Receipt:
    receipt: Receipt = report_forbidden(port=port, total=1, items=[])
    return receipt


@dataclasses.dataclass
class Outcome:
    result: RunResult
    nodes: dict[str, Any]
    logs: str

    @property
    def error(self) -> errors_pb2.ExecutionError:
        return self.result.error

    def value(self, entity: Any) -> Any:
        assert self.result.phase == "SUCCEEDED", (self.result.error, self.logs)
        return outputs_to_python(entity, self.result.outputs)


def _run(data_dir: Path, entity: Any, **inputs: Any) -> Outcome:
    """Run on the embedded engine of `plait run`; read back its nodes and logs."""
    from plait._embedded import inputs_to_literals

    result = run(entity, inputs_to_literals(entity, inputs), data_dir)

    async def read() -> tuple[dict[str, Any], str]:
        engine = embedded_engine(data_dir)
        await engine.store.open()
        try:
            rec = await engine.executions.get("", "", result.execution)
            nodes = {n.node_id: n for n in await engine.executions.nodes(rec, None, 100)}
            lines = await engine.store.logs(rec.eid, "", 0, 0, 10_000)
            return nodes, "\n".join(e.text for _, e in lines)
        finally:
            await engine.store.close()

    nodes, logs = asyncio.run(read())
    return Outcome(result, nodes, logs)


@pytest.fixture
def service(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("PLAIT_SECRET_API_TOKEN", TOKEN)
    with web_service(TOKEN) as s:
        yield s


def _everything_stored(data_dir: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(data_dir.rglob("*")) if p.is_file())


# -- HTTP ------------------------------------------------------------------------------------------


def test_http_task_fills_url_headers_and_body_and_reads_a_typed_output(
    tmp_path: Path, service: WebService
) -> None:
    out = _run(tmp_path, lookup_and_report, port=service.port, uid=7)
    user, receipt = out.value(lookup_and_report)
    assert user == User(name="user7", id=7)
    assert receipt == Receipt(accepted=2, total=7, names=["a", "b"])
    get, post = sorted(service.requests, key=lambda r: r.method)  # they run side by side
    assert (get.method, get.path, get.body) == ("GET", "/users/7", None)
    assert post.method == "POST" and post.path == "/report/ok"
    assert post.headers["Authorization"] == f"Bearer {TOKEN}"
    assert post.headers["X-Caller"] == f"plait {service.port}"
    # The inputs not used in the URL or headers, as a JSON object.
    assert post.body == {"total": 7, "items": [{"name": "a", "qty": 1}, {"name": "b", "qty": 2}]}
    assert "POST http://127.0.0.1:" in out.logs and ": 200," in out.logs
    # The token is nowhere the engine keeps.
    assert TOKEN.encode() not in _everything_stored(tmp_path)


def test_http_5xx_is_retried_4xx_is_not_and_a_timeout_is_recoverable(
    tmp_path: Path, service: WebService
) -> None:
    ok = _run(tmp_path / "flaky", flaky, port=service.port)
    assert ok.value(flaky).accepted == 0
    assert service.hits("flaky") == 2 and ok.nodes["n0"].attempt == 2

    bad = _run(tmp_path / "missing", missing, port=service.port)
    assert bad.result.phase == "FAILED"
    assert bad.error.code == "HTTP404" and "no such report" in bad.error.message
    assert service.hits("missing") == 1 and bad.nodes["n0"].attempt == 1  # retries unused

    late = _run(tmp_path / "slow", slow, port=service.port)
    assert late.result.phase == "FAILED"
    assert late.error.code == "Timeout" and late.error.recoverable
    assert "no answer within 1s" in late.error.message


def test_secret_values_are_scrubbed_from_errors_and_logs(
    tmp_path: Path, service: WebService
) -> None:
    # The service echoes the Authorization header it got into its 403 answer.
    out = _run(tmp_path, forbidden, port=service.port)
    assert out.error.code == "HTTP403" and not out.error.recoverable
    assert "not allowed with Bearer ***" in out.error.message, out.error.message
    assert TOKEN not in out.error.message + out.error.details + out.logs
    assert TOKEN.encode() not in _everything_stored(tmp_path)


def test_a_missing_secret_fails_without_retry_naming_it(
    tmp_path: Path, service: WebService, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PLAIT_SECRET_API_TOKEN")
    out = _run(tmp_path, flaky, port=service.port)
    assert out.error.code == "SecretError" and not out.error.recoverable
    assert "'api-token' not found" in out.error.message
    assert "$PLAIT_SECRET_API_TOKEN" in out.error.message
    assert service.requests == []


# -- SQL on SQLite ---------------------------------------------------------------------------------

items = SQLTask(
    "tt.items",
    "SELECT name, qty FROM stock WHERE qty <= :limit AND name <> :skip ORDER BY name",
    connection_secret="warehouse",
    inputs={"limit": int, "skip": str},
    output=list[Item],
)
count = SQLTask(
    "tt.count",
    "SELECT count(*) FROM stock WHERE name = :name -- :not_a_parameter",
    connection_secret="warehouse",
    inputs={"name": str},
    output=int,
)
names = SQLTask(
    "tt.names", "SELECT name FROM stock ORDER BY qty", connection_secret="warehouse",
    output=list[str],
)  # fmt: skip
as_file = SQLTask(
    "tt.as_file", "SELECT name, qty FROM stock ORDER BY name", connection_secret="warehouse",
    output=File,
)  # fmt: skip
first_big = SQLTask(
    "tt.first_big",
    "SELECT qty FROM stock WHERE qty > :over",
    connection_secret="warehouse",
    inputs={"over": int},
    output=int | None,
)
must_exist = SQLTask(
    "tt.must_exist",
    "SELECT qty FROM stock WHERE qty > :over",
    connection_secret="warehouse",
    inputs={"over": int},
    output=int,
)


@workflow
def queries(
    limit: int, skip: str, name: str
) -> tuple[list[Item], int, list[str], File, int | None]:
    return (
        items(limit=limit, skip=skip),
        count(name=name),
        names(),
        as_file(),
        first_big(over=1000),
    )


@workflow
def no_row() -> int:
    qty: int = must_exist(over=1000)
    return qty


def _sqlite(path: Path) -> str:
    import sqlite3

    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE stock (name TEXT, qty INTEGER)")
        db.executemany(
            "INSERT INTO stock VALUES (?, ?)", [("apple", 5), ("bolt", 30), ("cog", 100)]
        )
    return f"sqlite:///{path}"


def test_sql_on_sqlite_binds_inputs_and_shapes_typed_outputs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PLAIT_SECRET_WAREHOUSE", _sqlite(tmp_path / "warehouse.db"))
    injection = "x' OR '1'='1"
    out = _run(tmp_path / "data", queries, limit=30, skip="bolt", name=injection)
    rows, n, ordered, file, none = out.value(queries)
    assert rows == [Item("apple", 5)]
    assert n == 0  # the quote is data, never SQL
    assert ordered == ["apple", "bolt", "cog"]
    assert none is None
    assert Path(file.path).read_text().splitlines() == ["name,qty", "apple,5", "bolt,30", "cog,100"]
    assert Path(file.path).is_relative_to(tmp_path / "data" / "blobs")
    assert "query returned 3 row(s)" in out.logs

    failed = _run(tmp_path / "data2", no_row)
    assert failed.error.code == "NonRetryableError" and not failed.error.recoverable
    assert "returned no rows" in failed.error.message


@workflow
def stock_csv() -> File:
    csv: File = as_file()
    return csv


def test_a_plugin_file_is_uploaded_when_blobs_live_in_s3(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, s3_server: S3Server, s3_bucket: str
) -> None:
    monkeypatch.setenv("PLAIT_SECRET_WAREHOUSE", _sqlite(tmp_path / "warehouse.db"))
    config = EngineConfig(
        data_dir=tmp_path / "data", blob_url=s3_bucket, blob_endpoint=s3_server.endpoint
    )
    result = run(stock_csv, LiteralMap(), tmp_path / "data", RunOptions(config=config))
    assert result.phase == "SUCCEEDED", result.error
    (lit,) = result.outputs.literals.values()
    # The plugin wrote into a local staging folder; its file is now an object of the store.
    prefix = f"{s3_bucket}/executions/default/development/{result.execution}/"
    assert lit.scalar.blob.uri.startswith(prefix), lit.scalar.blob.uri
    key = lit.scalar.blob.uri.removeprefix(f"{s3_bucket}/")
    stored = build_engine(config).objects.get(key)
    assert stored.decode().splitlines() == ["name,qty", "apple,5", "bolt,30", "cog,100"]
    assert not any((tmp_path / "data" / "staging").iterdir())
    assert not (tmp_path / "data" / "blobs").exists()


def test_sql_parameters_skip_quotes_comments_and_casts() -> None:
    q = "SELECT ':a', \"b:c\", x::int, :first, 10 % 3 /* :no */ FROM t WHERE y = :second -- :z"
    assert parameters(q) == ["first", "second"]
    assert to_pyformat(q) == (
        "SELECT ':a', \"b:c\", x::int, %(first)s, 10 %% 3 /* :no */ FROM t "
        "WHERE y = %(second)s -- :z"
    )


# -- SQL on PostgreSQL -----------------------------------------------------------------------------

insert = SQLTask(
    "tt.insert",
    "INSERT INTO stock (name, qty) VALUES (:name, :qty) RETURNING id",
    connection_secret="warehouse",
    inputs={"name": str, "qty": int},
    output=int,
)
upto = SQLTask(
    "tt.upto",
    "SELECT name, qty FROM stock WHERE id <= :max_id ORDER BY name",
    connection_secret="warehouse",
    inputs={"max_id": int},
    output=list[Item],
)
row = SQLTask(
    "tt.row",
    "SELECT name, qty FROM stock WHERE id = :id",
    connection_secret="warehouse",
    inputs={"id": int},
    output=Item,
)
broken = SQLTask("tt.broken", "SELECT nope FROM stock", connection_secret="warehouse", output=int)
sleepy_query = SQLTask(
    "tt.sleepy", "SELECT pg_sleep(60)::text || :tag", connection_secret="warehouse",
    inputs={"tag": str}, output=str, timeout=2,
)  # fmt: skip


@workflow
def pg_flow(name: str, qty: int) -> tuple[int, list[Item], Item, int]:
    new_id = insert(name=name, qty=qty)
    item = row(id=new_id)
    return new_id, upto(max_id=new_id), item, count(name=item.name)


@workflow
def pg_broken() -> int:
    value: int = broken()
    return value


@workflow
def pg_sleepy() -> str:
    text: str = sleepy_query(tag="plait-sleepy")
    return text


def test_sql_on_postgresql(
    tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import psycopg

    with psycopg.connect(postgres_url, autocommit=True) as db:
        db.execute("CREATE TABLE stock (id serial PRIMARY KEY, name text, qty numeric)")
        db.execute("INSERT INTO stock (name, qty) VALUES ('apple', 5), ('bolt', 30)")
    monkeypatch.setenv("PLAIT_SECRET_WAREHOUSE", postgres_url)

    out = _run(tmp_path / "a", pg_flow, name="cog%", qty=40)
    new_id, rows, item, n = out.value(pg_flow)
    assert new_id == 3 and n == 1
    assert item == Item("cog%", 40)  # one row as a record; numeric -> int
    assert rows == [Item("apple", 5), Item("bolt", 30), Item("cog%", 40)]

    bad = _run(tmp_path / "b", pg_broken)
    assert bad.error.code == "UndefinedColumn" and not bad.error.recoverable
    # The connection string (a secret) is in no error, log or stored byte.
    password_url = postgres_url.encode()
    assert password_url not in _everything_stored(tmp_path)

    # A timed-out attempt cancels its query on the server.
    late = _run(tmp_path / "c", pg_sleepy)
    assert late.result.phase == "FAILED" and late.error.code == "Timeout"
    deadline = time.monotonic() + 15
    with psycopg.connect(postgres_url, autocommit=True) as db:
        while True:
            running = db.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(60)%' "
                "AND state = 'active' AND pid <> pg_backend_pid()"
            ).fetchone()
            if running == (0,) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    assert running == (0,), "the timed-out query still runs on the server"


# -- checks at the door ----------------------------------------------------------------------------


def test_bad_configuration_is_refused_when_declared_naming_the_field() -> None:
    from plait import PlaitValueError

    with pytest.raises(PlaitValueError, match=r"custom\.url: placeholder \{id\} names no input"):
        HTTPTask("tt.bad", "http://x/{id}", inputs={"uid": int}, output=str)
    with pytest.raises(PlaitValueError, match=r"custom\.query: parameter :missing names no input"):
        SQLTask("tt.bad", "SELECT :missing", connection_secret="db", output=int)
    with pytest.raises(PlaitValueError, match=r"custom.headers.Authorization: secret 'tok'"):
        HTTPTask("tt.bad", "http://x/", headers={"Authorization": "{secret:tok}"}, output=str)


def test_the_templates_carry_config_and_secret_names_never_values(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PLAIT_SECRET_API_TOKEN", TOKEN)
    tpl = report_ok.template
    assert tpl.type == "http" and tpl.HasField("worker")
    assert [s.name for s in tpl.metadata.secrets] == ["api-token"]
    custom = json_format.MessageToDict(tpl.custom)
    assert custom["headers"]["Authorization"] == "Bearer {secret:api-token}"
    assert TOKEN.encode() not in tpl.SerializeToString()
    sql = items.template
    assert sql.type == "sql" and sql.custom["connection_secret"] == "warehouse"
    assert [s.name for s in sql.metadata.secrets] == ["warehouse"]
