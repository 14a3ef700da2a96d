"""Watching and terminating an execution over `grpc.aio`, for the triggerer's event loop.

`plait.Client` is synchronous; a trigger must not block the loop it shares with every other
trigger, so it talks to the engine's `ExecutionService` with the generated stubs directly.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

import grpc
import grpc.aio
from plaitidl.core.v1 import identifier_pb2
from plaitidl.service.v1 import execution_service_pb2 as es
from plaitidl.service.v1 import execution_service_pb2_grpc as es_grpc

from airflow.providers.plait import _steps

log = logging.getLogger(__name__)

# Seconds between attempts to resume the watch while the engine is unreachable (a restart).
RECONNECT_DELAY = 1.0
_UNARY_TIMEOUT = 30.0
_MAX_MESSAGE_BYTES = 64 << 20


class WatchError(Exception):
    """The engine refused a call (an unknown execution, a wrong token, ...).

    Attributes:
        code: The gRPC status code's name, e.g. ``"NOT_FOUND"``.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


def execution_id(key: Mapping[str, str]) -> identifier_pb2.ExecutionIdentifier:
    """``{project, domain, name}`` as an `ExecutionIdentifier`."""
    return identifier_pb2.ExecutionIdentifier(
        project=key.get("project", ""), domain=key.get("domain", ""), name=key["name"]
    )


def _channel(conn: _steps.Connection) -> grpc.aio.Channel:
    options = [
        ("grpc.max_receive_message_length", _MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", _MAX_MESSAGE_BYTES),
    ]
    pem = conn.ca_cert_pem()
    if pem is not None or conn.tls:
        creds = grpc.ssl_channel_credentials(root_certificates=pem)
        return grpc.aio.secure_channel(conn.address, creds, options=options)
    return grpc.aio.insecure_channel(conn.address, options=options)


def _metadata(conn: _steps.Connection) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {conn.token}"),) if conn.token else ()


async def wait_until_done(
    conn: _steps.Connection, eid: identifier_pb2.ExecutionIdentifier
) -> es.Execution:
    """Follow the execution's events until it ends; return its final state.

    The watch resumes from the last event seen while the engine is unreachable.

    Raises:
        WatchError: The engine refused a call (anything but UNAVAILABLE).
    """
    metadata = _metadata(conn)
    seq = 0
    async with _channel(conn) as channel:
        stub = es_grpc.ExecutionServiceStub(channel)
        while True:
            try:
                request = es.WatchExecutionRequest(id=eid, after_sequence=seq)
                async for batch in stub.WatchExecution(request, metadata=metadata):
                    if batch.events:
                        seq = batch.events[-1].sequence
                got = await stub.GetExecution(
                    es.GetExecutionRequest(id=eid), metadata=metadata, timeout=_UNARY_TIMEOUT
                )
            except grpc.aio.AioRpcError as err:
                if err.code() != grpc.StatusCode.UNAVAILABLE:
                    raise WatchError(err.code().name, err.details() or "") from None
                log.info("plait engine unreachable (%s); resuming after event %d", err, seq)
                await asyncio.sleep(RECONNECT_DELAY)
                continue
            # A stream also ends when the engine drains for a restart: resume it then.
            if got.execution.phase in _steps.TERMINAL_PHASES:
                return got.execution


async def terminate(
    conn: _steps.Connection, eid: identifier_pb2.ExecutionIdentifier, reason: str
) -> es.Execution:
    """Terminate the execution (a no-op when it has ended); returns its state.

    Raises:
        WatchError: The engine refused or could not be reached.
    """
    async with _channel(conn) as channel:
        stub = es_grpc.ExecutionServiceStub(channel)
        try:
            got = await stub.TerminateExecution(
                es.TerminateExecutionRequest(id=eid, reason=reason),
                metadata=_metadata(conn),
                timeout=_UNARY_TIMEOUT,
            )
        except grpc.aio.AioRpcError as err:
            raise WatchError(err.code().name, err.details() or "") from None
    return got.execution
