"""The task type contract's pure parts: configurations read from `custom` with every problem
named by its field, secrets from files and the environment, scrubbing, and plugin discovery
that reports what does not load instead of failing."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Literal

import pytest
from google.protobuf import struct_pb2
from plait._plugins import SecretProvider as WorkerSecrets
from plait.ext import InvalidConfigError
from plait.ext._config import from_struct, to_struct
from plait_engine.plugins import PluginConfigError, Plugins, discover
from plait_engine.secrets import Scrubber, SecretNotFoundError, SecretProvider, default_env_var
from plaitidl.core.v1 import errors_pb2, tasks_pb2


@dataclasses.dataclass
class Inner:
    level: int


@dataclasses.dataclass
class Config:
    url: str
    mode: Literal["fast", "safe"] = "safe"
    retries: int = 0
    ratio: float = 1.0
    tags: list[str] = dataclasses.field(default_factory=list)
    headers: dict[str, str] = dataclasses.field(default_factory=dict)
    inner: Inner | None = None


def _struct(data: dict[str, object]) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(data)  # type: ignore[arg-type]
    return s


def test_a_config_round_trips_through_custom() -> None:
    c = Config(url="u", mode="fast", retries=3, ratio=0.5, tags=["a"], headers={"k": "v"},
               inner=Inner(2))  # fmt: skip
    assert from_struct(Config, to_struct(c)) == c


def test_every_problem_of_a_config_is_named_by_its_field() -> None:
    bad = _struct(
        {
            "mode": "quick",
            "retries": 1.5,
            "ratio": "x",
            "tags": ["a", 3],
            "headers": {"k": 1},
            "inner": {"level": "high"},
            "extra": True,
        }
    )
    with pytest.raises(InvalidConfigError) as exc:
        from_struct(Config, bad)
    assert dict(exc.value.problems) == {
        "custom.extra": "unknown field; fields are url, mode, retries, ratio, tags, headers, inner",
        "custom.url": "is required",
        "custom.mode": "must be one of 'fast', 'safe', got 'quick'",
        "custom.retries": "expected an integer, got 1.5",
        "custom.ratio": "expected a number, got string",
        "custom.tags[1]": "expected a string, got number",
        "custom.headers.k": "expected a string, got number",
        "custom.inner.level": "expected an integer, got 'high'",
    }


def test_secrets_come_from_files_then_the_environment(tmp_path: Path) -> None:
    (tmp_path / "db").write_text("postgresql://x\n")
    env = {"PLAIT_SECRET_API_TOKEN": "t0k3n", "MY_VAR": "mine"}
    for provider in (SecretProvider(tmp_path, env), WorkerSecrets(tmp_path, env)):
        assert provider.get(tasks_pb2.SecretRequest(name="db")) == "postgresql://x"
        assert provider.get(tasks_pb2.SecretRequest(name="api-token")) == "t0k3n"
        assert provider.get(tasks_pb2.SecretRequest(name="x", env_var="MY_VAR")) == "mine"
        with pytest.raises(LookupError, match=r"secret 'nope' not found .*\$PLAIT_SECRET_NOPE"):
            provider.get(tasks_pb2.SecretRequest(name="nope"))
        with pytest.raises(LookupError, match="not valid"):
            provider.get(tasks_pb2.SecretRequest(name="../db"))
    assert issubclass(SecretNotFoundError, LookupError)
    assert default_env_var("warehouse.main-1") == "PLAIT_SECRET_WAREHOUSE_MAIN_1"


def test_scrubbing_masks_every_value_handed_out() -> None:
    scrub = Scrubber()
    scrub.add("s3cret-value")
    scrub.add("line-one\nline-two")
    scrub.add("ab")  # too short to mask without mangling every line
    assert scrub("got s3cret-value and line-two, ab") == "got *** and ***, ab"
    err = errors_pb2.ExecutionError(message="bad s3cret-value", details="x line-one y")
    assert scrub.error(err).message == "bad ***" and err.details == "x *** y"


def test_discovery_reports_plugins_that_do_not_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    info = tmp_path / "broken_plugins-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugins\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[plait.task_types]\n"
        "gone = no_such_module_xyz:Plugin\n"
        "liar = json:JSONDecoder\n"
        "python-task = json:JSONDecoder\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    found = discover()
    assert {"http", "ray", "sql"} <= set(found.plugins)
    assert "No module named 'no_such_module_xyz'" in found.problems["gone"]
    assert "not a task type plugin" in found.problems["liar"]
    assert "the Python SDK's own" in found.problems["python-task"]
    with pytest.raises(PluginConfigError, match="gone: no_such_module_xyz:Plugin: Module"):
        Plugins.load(["gone"], embedded=False)
    served = Plugins.load(["*"], embedded=False)
    assert served.run_here == {"http", "ray", "sql"}
    assert served.get("python-task") is None and served.get("sql") is not None
    assert "json" in sys.modules  # loading a bad entry point imported its module, nothing broke
