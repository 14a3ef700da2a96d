"""The console's HTTP side against a real `plait serve --console-address`: the Connect
protocol (unary and server-streaming, JSON and binary) for the engine's services, errors as
Connect's error JSON, tokens, the front end's files; and `plait console` over a local data dir.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import struct
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google.protobuf.message import Message
from plait import Client
from plaitidl.core.v1 import identifier_pb2
from plaitidl.service.v1 import execution_service_pb2 as es

from tests.support.servers import ROOT, EngineProcess, plait_command, start_engine, start_worker
from tests.workflows import console_flows

SERVICE = "/plaitidl.service.v1.ExecutionService"
TOKEN = "console-test-token-0123456789"


def _post(
    address: str, path: str, body: bytes, content_type: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(
        f"http://{address}{path}",
        data=body,
        headers={"Content-Type": content_type, **(headers or {})},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as res:
            return res.status, dict(res.headers), res.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def call_json(
    address: str, method: str, request: dict[str, Any], headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    """One unary call in Connect's JSON: (HTTP status, decoded body)."""
    status, _, body = _post(
        address, method, json.dumps(request).encode(), "application/json", headers
    )
    return status, json.loads(body)


def _envelopes(body: bytes) -> list[tuple[int, bytes]]:
    out = []
    at = 0
    while at < len(body):
        flags, size = struct.unpack_from(">BI", body, at)
        out.append((flags, body[at + 5 : at + 5 + size]))
        at += 5 + size
    return out


def stream(address: str, method: str, request: Message | dict[str, Any]) -> list[tuple[int, bytes]]:
    """A server-streaming call: its enveloped messages (flags, payload)."""
    if isinstance(request, Message):
        payload, kind = request.SerializeToString(), "application/connect+proto"
    else:
        payload, kind = json.dumps(request).encode(), "application/connect+json"
    status, headers, body = _post(
        address, method, struct.pack(">BI", 0, len(payload)) + payload, kind
    )
    assert status == 200
    assert headers["Content-Type"] == kind
    return _envelopes(body)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[EngineProcess, str]]:
    """An engine with a console and a worker; yields it and a finished fan-out's name."""
    tmp = tmp_path_factory.mktemp("console")
    engine = start_engine(tmp, "--console-address", "127.0.0.1:0")
    worker = start_worker(engine.address, "tests.workflows.console_flows", log=tmp / "worker.log")
    try:
        with Client(engine.address) as client:
            run = client.execute(console_flows.big_fan_out, {"n": 30}, name="fan30")
            assert client.wait(run) == [i * i for i in range(30)]
        yield engine, engine.console_address()
    finally:
        worker.terminate()
        worker.wait(10)
        engine.stop()


def test_the_readme_curl_example_lists_executions(served: tuple[EngineProcess, str]) -> None:
    _, console = served
    out = subprocess.run(
        [
            "curl", "-s", "-H", "Content-Type: application/json", "-d", '{"project":"default"}',
            f"http://{console}{SERVICE}/ListExecutions",
        ],
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    listed = json.loads(out.stdout)
    names = [e["id"]["name"] for e in listed["executions"]]
    assert "fan30" in names
    fan = next(e for e in listed["executions"] if e["id"]["name"] == "fan30")
    assert fan["phase"] == "EXECUTION_PHASE_SUCCEEDED"
    assert fan["nodes"]["total"] == 31  # canonical proto3 JSON: camelCase, enums by name


def test_binary_and_json_answer_the_same(served: tuple[EngineProcess, str]) -> None:
    _, console = served
    request = es.GetExecutionRequest(id=identifier_pb2.ExecutionIdentifier(name="fan30"))
    status, headers, body = _post(
        console, f"{SERVICE}/GetExecution", request.SerializeToString(), "application/proto"
    )
    assert status == 200 and headers["Content-Type"].startswith("application/proto")
    binary = es.GetExecutionResponse.FromString(body)
    status, as_json = call_json(console, f"{SERVICE}/GetExecution", {"id": {"name": "fan30"}})
    assert status == 200
    assert binary.execution.id.name == as_json["execution"]["id"]["name"] == "fan30"
    assert int(as_json["execution"]["lastSequence"]) == binary.execution.last_sequence > 0


def test_errors_are_connect_errors_with_details(served: tuple[EngineProcess, str]) -> None:
    _, console = served
    status, err = call_json(console, f"{SERVICE}/GetExecution", {"id": {"name": "nope"}})
    assert status == 404
    assert err["code"] == "not_found" and "nope" in err["message"]
    status, err = call_json(
        console, "/plaitidl.service.v1.RegistryService/Register", {"tasks": [{"id": {"name": ""}}]}
    )
    assert status == 400 and err["code"] == "invalid_argument"
    detail = err["details"][0]
    assert detail["type"] == "google.rpc.BadRequest"
    fields = [v["field"] for v in detail["debug"]["fieldViolations"]]
    assert "tasks[0].id.name" in fields
    assert base64.b64decode(detail["value"] + "==")  # the detail's bytes, unpadded base64
    status, err = call_json(console, f"{SERVICE}/ListExecutions", {"bogus": 1})
    assert status == 400 and "ListExecutionsRequest" in err["message"] and "bogus" in err["message"]
    status, err = call_json(console, f"{SERVICE}/NoSuchMethod", {})
    assert status == 501 and err["code"] == "unimplemented"
    # A bidirectional stream cannot be carried over HTTP/1.1: workers use gRPC.
    status, err = call_json(console, "/plaitidl.service.v1.WorkerService/Session", {})
    assert status == 501 and err["code"] == "unimplemented"
    status, headers, _ = _post(console, f"{SERVICE}/ListExecutions", b"{}", "text/plain")
    assert status == 415 and "application/json" in headers["Accept-Post"]


def test_server_streaming_in_json_and_binary(served: tuple[EngineProcess, str]) -> None:
    _, console = served
    messages = stream(console, f"{SERVICE}/WatchExecution", {"id": {"name": "fan30"}})
    *data, (end_flags, end) = messages
    assert end_flags == 2 and json.loads(end) == {}
    assert {flags for flags, _ in data} == {0}
    events = [e for _, m in data for e in json.loads(m)["events"]]
    assert events[0]["sequence"] == "1"
    assert events[-1]["execution"]["phase"] == "EXECUTION_PHASE_SUCCEEDED"
    request = es.WatchExecutionRequest(id=identifier_pb2.ExecutionIdentifier(name="fan30"))
    *data, (end_flags, end) = stream(console, f"{SERVICE}/WatchExecution", request)
    binary = [e for _, m in data for e in es.WatchExecutionResponse.FromString(m).events]
    assert len(binary) == len(events) and end_flags == 2
    # An error ends the stream with Connect's error in the end message (HTTP 200).
    *data, (end_flags, end) = stream(console, f"{SERVICE}/WatchExecution", {"id": {"name": "x"}})
    assert data == [] and end_flags == 2
    assert json.loads(end)["error"]["code"] == "not_found"


def test_one_node_s_events_and_graph_levels(served: tuple[EngineProcess, str]) -> None:
    _, console = served
    *data, _ = stream(
        console, f"{SERVICE}/WatchExecution", {"id": {"name": "fan30"}, "nodeId": "n0/n3"}
    )
    events = [e for _, m in data for e in json.loads(m)["events"]]
    assert {e["node"]["nodeId"] for e in events} == {"n0/n3"}
    assert events[-1]["node"]["phase"] == "NODE_PHASE_SUCCEEDED"
    status, graph = call_json(
        console,
        f"{SERVICE}/GetNodeGraph",
        {"id": {"name": "fan30"}, "parentNodeId": "n0", "groupThreshold": 10},
    )
    assert status == 200
    (group,) = graph["nodes"]
    assert group["name"] == "square" and group["groupSize"] == 30
    assert group["groupPhases"] == [{"phase": "NODE_PHASE_SUCCEEDED", "count": 30}]
    status, page = call_json(
        console,
        f"{SERVICE}/ListNodeExecutions",
        {"id": {"name": "fan30"}, "parentNodeId": "n0", "name": "square", "pageSize": 7},
    )
    assert status == 200 and len(page["nodeExecutions"]) == 7 and page["nextPageToken"]
    status, counted = call_json(
        console, f"{SERVICE}/CountNodeExecutions", {"id": {"name": "fan30"}, "nodeId": "n0"}
    )
    assert status == 200 and counted["total"] == 30


def test_front_end_files_and_settings(served: tuple[EngineProcess, str]) -> None:
    _, console = served
    with urllib.request.urlopen(f"http://{console}/", timeout=10) as res:
        index = res.read().decode()
        assert res.headers["X-Content-Type-Options"] == "nosniff"
    assert '<div id="app">' in index and "/assets/" in index
    # Every page path is the front end (it routes by path).
    with urllib.request.urlopen(f"http://{console}/executions/p/d/x", timeout=10) as res:
        assert res.read().decode() == index
    asset = index.split('src="', 1)[1].split('"', 1)[0]
    with urllib.request.urlopen(f"http://{console}{asset}", timeout=10) as res:
        assert "immutable" in res.headers["Cache-Control"] and len(res.read()) > 10_000
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(f"http://{console}/assets/nothing.js", timeout=10)
    assert missing.value.code == 404
    with urllib.request.urlopen(f"http://{console}/console.json", timeout=10) as res:
        assert json.loads(res.read()) == {"mode": "server", "data_dir": "", "launch": True}


def test_tokens_are_checked_by_the_grpc_server(tmp_path: Path) -> None:
    engine = start_engine(tmp_path, "--console-address", "127.0.0.1:0", "--token", TOKEN)
    try:
        console = engine.console_address()
        status, err = call_json(console, f"{SERVICE}/ListExecutions", {})
        assert status == 401 and err["code"] == "unauthenticated"
        status, err = call_json(
            console,
            f"{SERVICE}/ListExecutions",
            {},
            {"Authorization": "Bearer wrong-token-xxxxxxxx"},
        )
        assert status == 401
        status, ok = call_json(
            console, f"{SERVICE}/ListExecutions", {}, {"Authorization": f"Bearer {TOKEN}"}
        )
        assert status == 200 and ok == {}
    finally:
        assert engine.stop() == 0


def test_plait_console_over_a_local_data_dir(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLAIT_")}
    subprocess.run(
        plait_command(
            "run", "--data-dir", str(data_dir), "--name", "local1", "--quiet",
            "tests.workflows.console_flows", "big_fan_out", "--n", "5",
        ),
        cwd=ROOT, env=env, check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    proc = subprocess.Popen(
        plait_command("console", "--data-dir", str(data_dir), "--address", "127.0.0.1:0"),
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        addr_file = data_dir / "console.addr"
        deadline = time.monotonic() + 30
        while not addr_file.exists():
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            assert time.monotonic() < deadline, "plait console did not start"
            time.sleep(0.05)
        console = addr_file.read_text().strip()
        status, listed = call_json(console, f"{SERVICE}/ListExecutions", {})
        assert status == 200
        assert [e["id"]["name"] for e in listed["executions"]] == ["local1"]
        status, graph = call_json(console, f"{SERVICE}/GetNodeGraph", {"id": {"name": "local1"}})
        assert status == 200 and graph["nodes"][0]["hasChildren"] is True
        # It runs nothing: launching is refused, naming what does.
        status, err = call_json(
            console,
            f"{SERVICE}/CreateExecution",
            {"workflowId": listed["executions"][0]["workflowId"], "inputs": {}},
        )
        assert status == 400 and err["code"] == "failed_precondition"
        assert "plait run" in err["message"]
        with urllib.request.urlopen(f"http://{console}/console.json", timeout=10) as res:
            settings = json.loads(res.read())
        assert settings == {"mode": "local", "data_dir": str(data_dir), "launch": False}
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
