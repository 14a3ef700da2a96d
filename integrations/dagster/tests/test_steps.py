"""The launch rules shared by the three integrations (`integrations/common/_steps.py`)."""

from __future__ import annotations

import pytest
from plaitidl.core.v1 import execution_pb2, identifier_pb2
from plaitidl.service.v1 import execution_service_pb2

from dagster_plait import _steps


def test_request_ids_keep_parts_apart_and_stay_short() -> None:
    rid = _steps.step_request_id(
        "airflow", "dag:x", "task#1", "manual__2026-11-30T17:44:44+00:00", -1
    )
    assert rid == "airflow:dag%3Ax:task%231:manual__2026-11-30T17%3A44%3A44+00%3A00:-1"
    # Parts never run together: "a:b" + "c" differs from "a" + "b:c".
    assert _steps.step_request_id("x", "a:b", "c") != _steps.step_request_id("x", "a", "b:c")
    assert _steps.step_request_id("x", "a", namespace="prod") == "prod:x:a"
    long = _steps.step_request_id("dagster", "r" * 300)
    assert len(long) == 200
    assert long != _steps.step_request_id("dagster", "r" * 299 + "s")
    assert _steps.generation_request_id(rid, 1) == rid
    assert _steps.generation_request_id(rid, 3) == rid + "#3"


def test_targets_parse_or_name_the_field() -> None:
    ident = _steps.parse_target(" proj/dev/mod.wf@v1 ")
    assert (ident.project, ident.domain, ident.name, ident.version) == (
        "proj",
        "dev",
        "mod.wf",
        "v1",
    )
    assert ident.resource_type == identifier_pb2.RESOURCE_TYPE_UNSPECIFIED
    assert _steps.parse_target("p/d/n").version == ""
    for bad in ("n", "p/n", "p//n", "p/d/n/x", ""):
        with pytest.raises(ValueError, match=r"target .*: expected 'project/domain/name'"):
            _steps.parse_target(bad)


def test_connections_check_the_address_and_write_a_pem_ca_to_a_file() -> None:
    with pytest.raises(ValueError, match="address 'localhost': expected HOST:PORT"):
        _steps.Connection("localhost")
    pem = "-----BEGIN CERTIFICATE-----\nabc\n-----END CERTIFICATE-----\n"
    conn = _steps.Connection("h:1", ca_cert=pem)
    assert conn.ca_cert_pem() == pem.encode()
    assert _steps.ca_cert_file(pem) == _steps.ca_cert_file(pem)
    assert _steps.ca_cert_file("  ") is None


def test_failure_messages_and_console_urls() -> None:
    execution = execution_service_pb2.Execution(phase=execution_pb2.EXECUTION_PHASE_FAILED)
    execution.id.project, execution.id.domain, execution.id.name = "p", "d", "x1"
    execution.error.code, execution.error.message = "ValueError", "bad"
    execution.error.node_id = "n0/n2"
    assert (
        str(_steps.failed_error(execution)) == "execution x1 failed (node n0/n2): ValueError: bad"
    )
    assert _steps.execution_url("http://c/", execution) == "http://c/executions/p/d/x1"
    assert _steps.execution_url(None, execution) is None
