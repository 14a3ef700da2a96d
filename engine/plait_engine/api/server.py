"""The engine as a gRPC server: `plait serve`."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from typing import TYPE_CHECKING

import grpc
import grpc.aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from plaitidl.service.v1 import (
    data_service_pb2,
    data_service_pb2_grpc,
    execution_service_pb2,
    execution_service_pb2_grpc,
    registry_service_pb2,
    registry_service_pb2_grpc,
    schedule_service_pb2,
    schedule_service_pb2_grpc,
    worker_service_pb2,
)

from plait_engine.api.auth import AuthInterceptor, TokenTable
from plait_engine.api.data import DataServicer
from plait_engine.api.executions import ExecutionServicer
from plait_engine.api.interceptors import ErrorInterceptor
from plait_engine.api.registry import RegistryServicer
from plait_engine.api.schedules import ScheduleServicer
from plait_engine.api.workers import WorkerServicer, add_worker_service
from plait_engine.app import Engine, build_engine
from plait_engine.config import ConfigError, EngineConfig

if TYPE_CHECKING:
    from plait_engine.console import Attached

log = logging.getLogger("plait_engine.server")

SERVICE_NAMES = (
    registry_service_pb2.DESCRIPTOR.services_by_name["RegistryService"].full_name,
    execution_service_pb2.DESCRIPTOR.services_by_name["ExecutionService"].full_name,
    schedule_service_pb2.DESCRIPTOR.services_by_name["ScheduleService"].full_name,
    worker_service_pb2.DESCRIPTOR.services_by_name["WorkerService"].full_name,
    data_service_pb2.DESCRIPTOR.services_by_name["DataService"].full_name,
)
# Seconds in-flight RPCs get to finish on shutdown; open streams (watch, worker sessions) are
# cut after it, and clients resume them.
SHUTDOWN_GRACE = 3.0

ReadyFn = Callable[[str], None]
_LOOPBACK = ("127.0.0.1", "localhost", "[::1]", "::1")


def _bind(server: grpc.aio.Server, config: EngineConfig) -> int:
    if config.tls_cert is not None and config.tls_key is not None:
        creds = grpc.ssl_server_credentials(
            [(config.tls_key.read_bytes(), config.tls_cert.read_bytes())]
        )
        return server.add_secure_port(config.address, creds)
    return server.add_insecure_port(config.address)


def tokens_of(config: EngineConfig) -> TokenTable | None:
    """The tokens the server accepts (None: every call is accepted).

    Raises:
        ConfigError: The token file is unreadable or invalid.
    """
    if config.token_file is not None:
        return TokenTable.load(config.token_file)
    if config.token:
        return TokenTable.single_admin(config.token)
    return None


def build_server(
    engine: Engine, tokens: TokenTable | None = None
) -> tuple[grpc.aio.Server, health.aio.HealthServicer]:  # type: ignore[name-defined]
    """The gRPC server of an engine: its services, health, reflection and interceptors.

    Args:
        engine: The engine.
        tokens: The accepted tokens (default: those of the engine's config).
    """
    config = engine.config
    interceptors: list[grpc.aio.ServerInterceptor] = []  # type: ignore[type-arg]
    tokens = tokens if tokens is not None else tokens_of(config)
    if tokens is not None:
        # First: a call is authenticated before anything of it is looked at.
        interceptors.append(AuthInterceptor(tokens))
    interceptors.append(ErrorInterceptor())
    server = grpc.aio.server(
        interceptors=interceptors,
        options=[
            ("grpc.max_receive_message_length", config.max_message_bytes),
            ("grpc.max_send_message_length", config.max_message_bytes),
        ],
    )
    registry_service_pb2_grpc.add_RegistryServiceServicer_to_server(
        RegistryServicer(engine.registry), server
    )
    execution_service_pb2_grpc.add_ExecutionServiceServicer_to_server(
        ExecutionServicer(engine.executions, engine.data, config.max_message_bytes), server
    )
    schedule_service_pb2_grpc.add_ScheduleServiceServicer_to_server(
        ScheduleServicer(engine.schedules), server
    )
    data_service_pb2_grpc.add_DataServiceServicer_to_server(DataServicer(engine.data), server)
    if engine.workers is not None:
        add_worker_service(WorkerServicer(engine.workers), server)
    health_servicer = health.aio.HealthServicer()  # type: ignore[attr-defined]
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    return server, health_servicer


def _console_of(server: grpc.aio.Server, config: EngineConfig) -> Attached | None:
    """The console `--console-address` asks for, attached to the server (before its start).

    Raises:
        ConfigError: The console's dependencies (the ``console`` extra) are not installed.
    """
    if not config.console_address:
        return None
    try:
        from plait_engine.console import ConsoleSettings, attach
    except ImportError as exc:
        raise ConfigError(
            f"console_address needs the console extra ({exc.name} is missing): "
            "pip install 'plait[console]'"
        ) from None
    return attach(server, ConsoleSettings(), max_message_bytes=config.max_message_bytes)


async def _start_console(console: Attached, config: EngineConfig, tokens: bool) -> None:
    bound = await console.start(config.console_address)
    host = bound.rsplit(":", 1)[0]
    if not tokens and host not in _LOOPBACK:
        log.warning(
            "console on %s without tokens: anyone who can reach it may use the engine", bound
        )
    (config.data_dir / "console.addr").write_text(bound + "\n")
    print(f"plait console on http://{bound}/", flush=True)


async def serve(config: EngineConfig, ready: ReadyFn | None = None) -> None:
    """Run the engine and its gRPC services until SIGTERM or SIGINT.

    Args:
        config: The engine's configuration.
        ready: Called with the bound ``HOST:PORT`` once the server accepts calls (the default
            prints the ``plait engine serving on ...`` line).

    Raises:
        RuntimeError: The address could not be bound.
        ConfigError: The token file or the process settings are invalid.
    """
    # A bad token file stops the engine before it opens its store.
    tokens = tokens_of(config)
    engine = build_engine(config)
    server, health_servicer = build_server(engine, tokens)
    port = _bind(server, config)
    if port == 0:
        raise RuntimeError(f"cannot listen on {config.address}")
    host = config.address.rsplit(":", 1)[0]
    bound = f"{host}:{port}"
    if tokens is None and host not in _LOOPBACK:
        log.warning(
            "serving on %s without tokens: anyone who can reach it may use it "
            "(see --token-file in the README, section Security)",
            bound,
        )

    console = _console_of(server, config)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    await engine.start()
    await server.start()
    for name in ("", *SERVICE_NAMES):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    try:
        if console is not None:
            await _start_console(console, config, tokens is not None)
        # Written after the servers are up, so whoever reads it can connect at once.
        addr_file = config.data_dir / "engine.addr"
        addr_file.write_text(bound + "\n")
        if ready is not None:
            ready(bound)
        else:
            print(f"plait engine serving on {bound} (data dir {config.data_dir})", flush=True)
        await stop.wait()
    finally:
        log.info("shutting down")
        if console is not None:
            await console.stop()
        await health_servicer.enter_graceful_shutdown()
        await server.stop(SHUTDOWN_GRACE)
        await engine.stop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
