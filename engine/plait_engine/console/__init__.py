"""The web console's server side: the built front end and a Connect endpoint, on one port.

The endpoint is not a second API: each call is forwarded to the engine's own gRPC server
(`connect`), so tokens, scopes, limits and error mapping are the gRPC server's. It needs the
``console`` extra (aiohttp); nothing imports this package unless a console is asked for.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import grpc.aio

from plait_engine.console.server import LOCAL_REFUSALS, ConsoleServer, ConsoleSettings

__all__ = ["LOCAL_REFUSALS", "Attached", "ConsoleServer", "ConsoleSettings", "attach"]


@dataclass
class Attached:
    """A console attached to a gRPC server that is about to start.

    Attributes:
        console: The HTTP server.
        folder: The private folder of the socket it reaches the gRPC server through.
        address: Where the console listens, once started.
    """

    console: ConsoleServer
    folder: Path
    address: str = field(default="")

    async def start(self, address: str) -> str:
        """Listen on ``HOST:PORT``; returns the bound address (after the gRPC server
        started)."""
        self.address = await self.console.start(address)
        return self.address

    async def stop(self) -> None:
        """Stop the console and remove its socket's folder."""
        await self.console.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


def attach(
    server: grpc.aio.Server,
    settings: ConsoleSettings,
    *,
    max_message_bytes: int,
    refusals: dict[str, str] | None = None,
) -> Attached:
    """A console for `server`, which it reaches through a Unix socket of its own.

    The socket lives in a fresh folder only the engine's user may enter (``mkdtemp``, mode
    0700): the gRPC server's TCP port may speak TLS only, and the socket stays as private as
    the engine's process whatever the network. Call before ``server.start()``.
    """
    folder = Path(tempfile.mkdtemp(prefix="plait-console-"))
    target = f"unix:{folder}/engine.sock"
    if server.add_insecure_port(target) == 0:
        shutil.rmtree(folder, ignore_errors=True)
        raise OSError(f"cannot listen on {target}")
    console = ConsoleServer(
        target, settings, max_message_bytes=max_message_bytes, refusals=refusals
    )
    return Attached(console, folder)
