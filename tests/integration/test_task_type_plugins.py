"""The plugin contract from outside: a task type anyone can add (an installed distribution with
an entry point, found by `plait run`, `plait serve` and `plait worker` when they start, never
by ``import plait``), `custom` refused at registration naming the field, and types that only
workers know routed to the workers that declare them.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import struct_pb2
from plait import Client, InvalidArgumentError
from plaitidl.core.v1 import execution_pb2, identifier_pb2, interface_pb2, tasks_pb2, types_pb2

from tests.support.servers import ROOT, EngineProcess, plait_command, start_engine, start_worker

PLUGIN = """
import dataclasses
from plait.ext import TaskType

LOADED = True


@dataclasses.dataclass
class ShoutConfig:
    suffix: str = "!"
    times: int = 1


class Shout(TaskType[ShoutConfig]):
    name = "shout"
    config = ShoutConfig

    def check(self, config, template):
        return [("custom.times", "must be at least 1")] if config.times < 1 else []

    def run(self, config, inputs, context):
        print("shouting", inputs["text"])
        return (inputs["text"].upper() + config.suffix) * config.times
"""

WORKFLOW = """
from plait import workflow
from plait.ext import PluginTask
from shout_plugin import Shout, ShoutConfig

shout = PluginTask(
    Shout, "shout_wf.shout", ShoutConfig(suffix="?", times=2), inputs={"text": str}, output=str
)


@workflow
def wf(text: str) -> str:
    return shout(text=text)
"""


@pytest.fixture
def plugin_dir(tmp_path: Path) -> Path:
    """A folder holding an installed distribution `shout-plugin` (its module and dist-info with
    an entry point of group plait.task_types), and a workflow file using its type."""
    root = tmp_path / "site"
    root.mkdir()
    (root / "shout_plugin.py").write_text(PLUGIN)
    (root / "shout_wf.py").write_text(WORKFLOW)
    info = root / "shout_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: shout-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[plait.task_types]\nshout = shout_plugin:Shout\n")
    return root


def _env(plugin_dir: Path) -> dict[str, str]:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("PLAIT_")}
    return {**env, "PYTHONPATH": str(plugin_dir)}


def test_an_installed_plugin_runs_embedded_and_import_plait_loads_none(
    plugin_dir: Path, tmp_path: Path
) -> None:
    env = _env(plugin_dir)
    probe = (
        "import sys, plait, shout_wf\n"
        "print(sorted(m for m in sys.modules if m.startswith(('plait.ext.', 'plait_engine'))))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True
    )
    # Defining a plugin task loads its type's class, never the other plugins nor the engine.
    assert (
        loaded.stdout.strip() == "['plait.ext._config', 'plait.ext._task', 'plait.ext._tasktype']"
    )

    data = str(tmp_path / "data")
    argv = plait_command("run", "--data-dir", data, str(plugin_dir / "shout_wf.py"), "wf")
    run = subprocess.run(
        [*argv, "--text", "hi"], env=env, cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "HI?HI?"
    execution = run.stderr.split("execution ", 1)[1].split()[0]
    logs = subprocess.run(
        plait_command("logs", "--data-dir", data, execution),
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "shouting hi" in logs.stdout


def _http_task(custom: dict[str, Any], name: str = "bad.http") -> tasks_pb2.TaskTemplate:
    string = types_pb2.LiteralType(simple=types_pb2.SIMPLE_TYPE_STRING)
    tpl = tasks_pb2.TaskTemplate(
        id=identifier_pb2.Identifier(name=name, version="v1"),
        type="http",
        interface=interface_pb2.TypedInterface(
            inputs=interface_pb2.VariableMap(
                variables=[interface_pb2.Variable(name="q", type=string)]
            ),
            outputs=interface_pb2.VariableMap(
                variables=[interface_pb2.Variable(name="o0", type=string)]
            ),
        ),
        worker=tasks_pb2.WorkerTarget(queue="default", handler="http"),
    )
    s = struct_pb2.Struct()
    s.update(custom)
    tpl.custom.CopyFrom(s)
    return tpl


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[EngineProcess]:
    e = start_engine(tmp_path)
    try:
        yield e
    finally:
        e.kill()


def test_registration_refuses_bad_custom_naming_the_field(engine: EngineProcess) -> None:
    from plaitidl.service.v1 import registry_service_pb2 as rs

    bad = _http_task(
        {"url": "ftp://x/{nope}", "method": "FETCH", "colour": "red", "timeout_seconds": "5"}
    )
    with Client(engine.address) as client:
        with pytest.raises(InvalidArgumentError) as refused:
            client.register_templates(rs.RegisterRequest(tasks=[bad]))
        fields = dict(refused.value.violations)
        assert fields["tasks[0].custom.colour"].startswith("unknown field")
        assert "must be one of 'GET'" in fields["tasks[0].custom.method"]
        assert fields["tasks[0].custom.timeout_seconds"] == "expected a number, got string"
        assert "tasks[0].custom.url" not in fields  # checked once the fields fit their types
        # A second problem after the types fit: the URL.
        bad2 = _http_task({"url": "ftp://x/{nope}"}, "bad.http2")
        with pytest.raises(InvalidArgumentError, match=r"tasks\[0\]\.custom\.url: must start"):
            client.register_templates(rs.RegisterRequest(tasks=[bad2]))
        found = client.registry.ValidateTemplates(rs.ValidateTemplatesRequest(tasks=[bad2]))
        assert {v.field for v in found.violations} == {"tasks[0].custom.url"}
        assert "placeholder {nope} names no input" in str(found)
        # A type no plugin of the engine knows is accepted as is: its workers check it.
        other = _http_task({"anything": [1, 2]}, "workers.only")
        other.type = "shout"
        other.metadata.secrets.add(name="../etc/passwd")
        with pytest.raises(InvalidArgumentError, match=r"metadata\.secrets\[0\]\.name"):
            client.register_templates(rs.RegisterRequest(tasks=[other]))
        del other.metadata.secrets[:]
        assert client.register_templates(rs.RegisterRequest(tasks=[other])).created


def _wait_for(check: object, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_a_type_only_workers_know_waits_for_a_worker_that_declares_it(
    plugin_dir: Path, engine: EngineProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(plugin_dir))
    import shout_wf  # type: ignore[import-not-found]

    with Client(engine.address) as client:
        # A worker without the plugin: it does not declare 'shout', so the node waits.
        plain = start_worker(engine.address, "tests/workflows/node_mix.py", log=tmp_path / "w1.log")
        try:
            _wait_for(lambda: "connected to" in (tmp_path / "w1.log").read_text())
            handle = client.execute(shout_wf.wf, {"text": "hey"})

            def waiting() -> bool:
                nodes = client.node_executions(handle)
                return any("type 'shout'" in n.detail for n in nodes)

            _wait_for(waiting)
            assert client.get(handle).phase == execution_pb2.EXECUTION_PHASE_RUNNING
            # A worker whose environment has the plugin declares the type and runs it.
            monkeypatch.setenv("PYTHONPATH", str(plugin_dir))
            shouter = start_worker(engine.address, str(plugin_dir / "shout_wf.py"),
                                   log=tmp_path / "w2.log")  # fmt: skip
            try:
                assert client.wait(handle, timeout=60) == "HEY?HEY?"
                # What the plugin printed, captured on the worker (logs are stored shortly).
                _wait_for(
                    lambda: (
                        "shouting hey"
                        in [ln.text for b in client.logs(handle, "n0") for ln in b.lines]
                    )
                )
            finally:
                shouter.terminate()
                shouter.wait(10)
        finally:
            plain.terminate()
            plain.wait(10)


def test_serve_refuses_a_plugin_that_is_not_installed(tmp_path: Path) -> None:
    argv = plait_command("serve", "--address", "127.0.0.1:0", "--data-dir", str(tmp_path))
    done = subprocess.run(
        [*argv, "--plugins", "spark"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert done.returncode == 2
    assert "cannot run task type(s) spark in the engine" in done.stderr
    assert "installed: http, ray, sql" in done.stderr
