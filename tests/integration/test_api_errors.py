"""The one place engine errors become gRPC status, and the one place the SDK maps them back."""

from __future__ import annotations

from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status
from plait._client import map_rpc_error
from plait._errors import InvalidArgumentError, NotFoundError, RpcError
from plait_engine.api.interceptors import to_status
from plait_engine.errors import FieldViolation, InvalidArgument, NotFound


class _FakeCall(grpc.RpcError, grpc.Call):
    """What grpc raises on a failed call: an RpcError that is also a Call."""

    def __init__(self, status: grpc.Status) -> None:
        self._status = status

    def code(self) -> grpc.StatusCode:
        return self._status.code

    def details(self) -> str:
        return self._status.details

    def trailing_metadata(self) -> Any:
        return self._status.trailing_metadata

    def initial_metadata(self) -> Any:
        return ()

    def is_active(self) -> bool:
        return False

    def time_remaining(self) -> float:
        return 0.0

    def cancel(self) -> bool:
        return False

    def add_callback(self, callback: object) -> bool:
        return False


def test_invalid_argument_round_trips_with_violations() -> None:
    status = to_status(
        InvalidArgument("bad", [FieldViolation("nodes[3].inputs.x", "expected an integer")])
    )
    assert status.code == grpc.StatusCode.INVALID_ARGUMENT
    (key, blob), *_ = status.trailing_metadata
    assert key == "grpc-status-details-bin"
    detail = status_pb2.Status.FromString(blob).details[0]
    bad = error_details_pb2.BadRequest()
    assert detail.Unpack(bad) and bad.field_violations[0].field == "nodes[3].inputs.x"

    err = map_rpc_error(_FakeCall(status))
    assert isinstance(err, InvalidArgumentError)
    assert err.code == "INVALID_ARGUMENT" and err.message == "bad"
    assert err.violations == [("nodes[3].inputs.x", "expected an integer")]


def test_other_errors() -> None:
    assert isinstance(map_rpc_error(_FakeCall(to_status(NotFound("gone")))), NotFoundError)
    internal = to_status(ZeroDivisionError("division by zero"))
    assert internal.code == grpc.StatusCode.INTERNAL
    assert "ZeroDivisionError" in internal.details
    err = map_rpc_error(_FakeCall(internal))
    assert type(err) is RpcError and err.code == "INTERNAL"
    assert rpc_status.to_status(status_pb2.Status(code=5, message="x")).code.name == "NOT_FOUND"
