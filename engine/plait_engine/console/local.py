"""`plait console`: the console over a local data dir (the embedded runner's state).

The engine is built by the composition root like any other, but never started: it adopts and
runs nothing (`plait run` does, in its own process; this console sees what it commits). Its
gRPC server listens only on the console's private socket.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable

from plait_engine.api.server import build_server
from plait_engine.app import build_engine
from plait_engine.config import EngineConfig
from plait_engine.console import LOCAL_REFUSALS, ConsoleSettings, attach

log = logging.getLogger("plait_engine.console")
_LOOPBACK = ("127.0.0.1", "localhost", "[::1]", "::1")


async def serve_local(config: EngineConfig, ready: Callable[[str], None] | None = None) -> None:
    """Serve the console of the data dir `config.data_dir` on `config.console_address` until
    SIGTERM or SIGINT.

    Args:
        config: The data dir, the console's address and the limits.
        ready: Called with the bound ``HOST:PORT`` (the default prints the console's URL).

    Raises:
        OSError: The address cannot be bound.
    """
    engine = build_engine(config)
    server, _ = build_server(engine, tokens=None)
    settings = ConsoleSettings(mode="local", data_dir=str(config.data_dir), launch=False)
    console = attach(
        server, settings, max_message_bytes=config.max_message_bytes, refusals=LOCAL_REFUSALS
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await server.start()
    try:
        bound = await console.start(config.console_address)
        if bound.rsplit(":", 1)[0] not in _LOOPBACK:
            log.warning("console on %s: anyone who can reach it sees this data dir", bound)
        (config.data_dir / "console.addr").write_text(bound + "\n")
        if ready is not None:
            ready(bound)
        else:
            print(f"plait console on http://{bound}/ (data dir {config.data_dir})", flush=True)
        await stop.wait()
    finally:
        await console.stop()
        await server.stop(1.0)
        await engine.store.close()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
