"""Trust rules as pure functions: token files, roles, the projects a request names, the
process policy, and error trimming."""

from __future__ import annotations

import hashlib
import hmac
import os
import shutil
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from plait_engine.api.auth import Principal, TokenTable
from plait_engine.api.interceptors import MAX_STATUS_MESSAGE_BYTES, to_status
from plait_engine.api.scopes import Role, named_projects, permitted
from plait_engine.config import ConfigError
from plait_engine.errors import FieldViolation, InvalidArgument, PermissionDenied
from plait_engine.executors.process import ProcessPolicy, RunAs
from plaitidl.core.v1 import identifier_pb2, workflow_pb2
from plaitidl.service.v1 import execution_service_pb2 as es
from plaitidl.service.v1 import registry_service_pb2 as rs
from plaitidl.service.v1 import schedule_service_pb2 as ss

SV = "/plaitidl.service.v1."


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "tokens.toml"
    path.write_text(text)
    return path


GOOD = """
[[tokens]]
name = "ops"
token = "admin-token-0123456789"
role = "admin"
projects = ["*"]

[[tokens]]
name = "ci"
token = "client-token-0123456789"
role = "client"
projects = ["alpha", "beta"]

[[tokens]]
name = "gpu"
token_sha256 = "{sha}"
role = "worker"
projects = ["alpha"]
""".replace("{sha}", hashlib.sha256(b"worker-token-0123456789").hexdigest())


def test_token_file_maps_tokens_to_principals(tmp_path: Path) -> None:
    table = TokenTable.load(_write(tmp_path, GOOD))
    assert len(table) == 3
    assert table.resolve("admin-token-0123456789") == Principal("ops", Role.ADMIN, None)
    ci = table.resolve("client-token-0123456789")
    assert ci == Principal("ci", Role.CLIENT, frozenset({"alpha", "beta"}))
    assert ci.may_use("alpha") and not ci.may_use("gamma")
    assert table.resolve("worker-token-0123456789") == Principal(
        "gpu", Role.WORKER, frozenset({"alpha"})
    )
    for wrong in ("", "admin-token-012345678", "admin-token-0123456789 ", "x" * 10_000):
        assert table.resolve(wrong) is None


def test_every_entry_is_compared_in_constant_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    table = TokenTable.load(_write(tmp_path, GOOD))
    calls: list[tuple[int, int]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((len(a), len(b)))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    # A match on the first entry, on the last, and no match: always every entry, equal lengths.
    for token in ("admin-token-0123456789", "worker-token-0123456789", "nope"):
        calls.clear()
        table.resolve(token)
        assert calls == [(32, 32)] * 3


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("tokens = 3", "no [[tokens]] entries"),
        ("[other]\nx = 1", "unknown key(s) ['other']"),
        ("[[tokens]]\nname='a'\nrole='admin'\nprojects=['*']", "exactly one of token"),
        (
            "[[tokens]]\nname='a'\ntoken='short-secret'\nrole='admin'\nprojects=['*']",
            "at least 16 characters",
        ),
        (
            "[[tokens]]\nname='a'\ntoken='long-enough-secret-1'\nrole='root'\nprojects=['*']",
            "role must be one of admin, client, worker",
        ),
        (
            "[[tokens]]\nname='a'\ntoken='long-enough-secret-1'\nrole='client'\nprojects=[]",
            "projects must be a non-empty list",
        ),
        (
            "[[tokens]]\nname='a'\ntoken='long-enough-secret-1'\nrole='client'\n"
            "projects=['*', 'x']",
            '"*" means every project',
        ),
        (
            "[[tokens]]\nname='a'\ntoken='long-enough-secret-1'\nrole='client'\n"
            "projects=['x']\ncolor='red'",
            "unknown key(s) ['color']",
        ),
        (
            "[[tokens]]\nname='a'\ntoken='long-enough-secret-1'\nrole='client'\nprojects=['x']\n"
            "[[tokens]]\nname='b'\ntoken='long-enough-secret-1'\nrole='admin'\nprojects=['*']",
            "tokens[1] (b) repeats the token of a",
        ),
        ("[[tokens]]\nname='a'\ntoken_sha256='abc'\nrole='admin'\nprojects=['*']", "64 hex"),
        ("[[tokens", "token file"),
    ],
)
def test_bad_token_files_are_refused_without_showing_tokens(
    tmp_path: Path, text: str, message: str
) -> None:
    with pytest.raises(ConfigError) as err:
        TokenTable.load(_write(tmp_path, text))
    assert message in str(err.value)
    assert "long-enough-secret-1" not in str(err.value)
    assert "short-secret" not in str(err.value)


def test_missing_token_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read token file"):
        TokenTable.load(tmp_path / "absent.toml")


def test_roles() -> None:
    for method in ("WorkerService/Session", "ExecutionService/ListExecutions", "Other/X"):
        assert permitted(Role.ADMIN, SV + method)
    client = [
        "RegistryService/Register",
        "RegistryService/ListTasks",
        "ExecutionService/CreateExecution",
        "ExecutionService/StreamLogs",
        "ScheduleService/PauseSchedule",
        "DataService/ReadData",
    ]
    worker = [
        "WorkerService/Session",
        "DataService/ReadData",
        "DataService/WriteData",
        "RegistryService/Register",
        "RegistryService/ValidateTemplates",
    ]
    for method in client:
        assert permitted(Role.CLIENT, SV + method), method
    assert not permitted(Role.CLIENT, SV + "WorkerService/Session")
    for method in worker:
        assert permitted(Role.WORKER, SV + method), method
    for method in client[1:5]:
        assert not permitted(Role.WORKER, SV + method), method


def test_named_projects_covers_identifiers_anywhere() -> None:
    wf = workflow_pb2.WorkflowTemplate(id=identifier_pb2.Identifier(project="a", name="w"))
    node = wf.nodes.add(id="n0")
    node.task_node.task_id.CopyFrom(identifier_pb2.Identifier(project="b", name="t"))
    inner = wf.nodes.add(id="n1").branch_node.case.then_node
    inner.task_node.task_id.name = "no-project"
    found = list(named_projects(rs.RegisterRequest(workflows=[wf])))
    assert found == [
        ("workflows[0].id.project", "a"),
        ("workflows[0].nodes[0].task_node.task_id.project", "b"),
        ("workflows[0].nodes[1].branch_node.case.then_node.task_node.task_id.project", "default"),
    ]
    assert list(named_projects(rs.ListTasksRequest())) == [("project", "default")]
    assert list(named_projects(ss.ListSchedulesRequest(project="p"))) == [("project", "p")]
    # An execution created without a project lives in its target's.
    create = es.CreateExecutionRequest(workflow_id=identifier_pb2.Identifier(project="c"))
    assert list(named_projects(create)) == [("workflow_id.project", "c")]
    create.project = "d"
    assert list(named_projects(create)) == [("project", "d"), ("workflow_id.project", "c")]
    node_request = es.GetNodeExecutionDataRequest()
    node_request.id.execution_id.project = "e"
    assert list(named_projects(node_request)) == [("id.execution_id.project", "e")]
    # Literal payloads name no project and are not walked.
    assert list(named_projects(es.CreateExecutionRequest(project="f"))) == [("project", "f")]


def test_process_policy() -> None:
    sh = shutil.which("sh")
    assert sh is not None
    off = ProcessPolicy()
    assert "process targets are off" in (off.refusal("/bin/true") or "")
    assert ProcessPolicy.allow_all().refusal("./anything") is None
    only_sh = ProcessPolicy((sh,))
    assert only_sh.refusal(sh) is None
    assert only_sh.refusal("sh") is None  # found on PATH where it is allowed
    assert "is not found on the engine's PATH" in (only_sh.refusal("no-such-program-x") or "")
    assert "relative path" in (only_sh.refusal("bin/sh") or "")
    assert "'..' part" in (only_sh.refusal(os.path.dirname(sh) + "/../bin/sh") or "")
    refused = only_sh.refusal("/usr/bin/env") or ""
    assert "/usr/bin/env is not an allowed process command" in refused and sh in refused
    tree = ProcessPolicy(("/opt/tasks/*",))
    assert tree.refusal("/opt/tasks/a/b") is None
    assert tree.refusal("/opt/tasks/../../bin/sh") is not None
    assert tree.refusal("/opt/tasksX") is not None


def test_run_as() -> None:
    me = RunAs.lookup(None)
    assert me.uid == os.geteuid() and not me.switch
    env = me.base_env()
    assert set(env) <= {"PATH", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR",
                        "HOME", "USER", "LOGNAME"}  # fmt: skip
    with pytest.raises(ConfigError, match="no user 'no-such-user-x'"):
        RunAs.lookup("no-such-user-x")
    if os.geteuid() == 0:
        nobody = RunAs.lookup("nobody")
        assert nobody.switch and nobody.uid != 0 and 0 not in nobody.groups


def _details(status: grpc.Status) -> tuple[status_pb2.Status, int]:
    (key, blob), *_ = status.trailing_metadata
    assert key == "grpc-status-details-bin"
    return status_pb2.Status.FromString(blob), len(blob)


def test_error_details_are_trimmed_to_fit_trailers() -> None:
    name = "n" * 10_000
    many = [FieldViolation(f"workflows[0].nodes[{i}].x", f"problem {i} of {name}") for i in
            range(10_000)]  # fmt: skip
    status = to_status(InvalidArgument(f"registration refused: {name}", many))
    assert status.code == grpc.StatusCode.INVALID_ARGUMENT
    assert len(status.details.encode()) <= MAX_STATUS_MESSAGE_BYTES
    assert status.details.endswith("more characters)")
    decoded, size = _details(status)
    assert size < 4096
    bad = error_details_pb2.BadRequest()
    decoded.details[0].Unpack(bad)
    shown = list(bad.field_violations)
    assert shown[0].field == "workflows[0].nodes[0].x"
    assert "more characters" in shown[0].description
    assert shown[-1].description.startswith(f"{10_000 - (len(shown) - 1)} more violation(s)")
    assert "RegistryService.ValidateTemplates" in shown[-1].description
    # Few small violations travel whole.
    small = to_status(InvalidArgument("bad", [FieldViolation("a", "b"), FieldViolation("c", "d")]))
    decoded, _ = _details(small)
    decoded.details[0].Unpack(bad)
    assert [(v.field, v.description) for v in bad.field_violations] == [("a", "b"), ("c", "d")]
    denied = to_status(PermissionDenied("no", [FieldViolation("tasks[0].process.command", "x")]))
    assert denied.code == grpc.StatusCode.PERMISSION_DENIED
