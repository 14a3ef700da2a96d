"""The console's HTTP server: the built front end and the Connect endpoint, one port.

``POST /<package>.<Service>/<Method>`` is the Connect endpoint (`connect`); ``GET
/console.json`` tells the front end how this server is set up; every other ``GET`` serves a
file of the built front end, or its ``index.html`` (the front end routes by path).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import grpc.aio
from aiohttp import web

from plait_engine.console.connect import (
    Codec,
    ConnectError,
    Forwarder,
    Method,
    call_metadata,
    call_timeout,
    decompress,
    end_stream,
    envelope,
    find_method,
    first_message,
    stream_codec,
    unary_codec,
)

log = logging.getLogger("plait_engine.console")

STATIC_DIR = Path(__file__).resolve().parent / "static"
_UNARY_TYPES = "application/json, application/proto"
_STREAM_TYPES = "application/connect+json, application/connect+proto"
_NOT_BUILT = """<!doctype html><meta charset="utf-8"><title>plait console</title>
<h1>plait console</h1><p>The front end is not built. In a checkout of plait, run
<code>make install</code> (it runs <code>npm ci</code> and <code>npm run build</code> in
<code>console/</code>). The Connect/JSON endpoint works without it.</p>"""
_SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": (
        "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        "frame-ancestors 'none'"
    ),
}


@dataclass(frozen=True)
class ConsoleSettings:
    """What the front end learns from ``/console.json``.

    Attributes:
        mode: ``server`` (``plait serve``) or ``local`` (``plait console`` over a data dir).
        data_dir: The data dir shown (local mode), else "".
        launch: Whether executions can be started here (a local console runs nothing).
    """

    mode: str = "server"
    data_dir: str = ""
    launch: bool = True


# What a local console refuses: it runs no executions, `plait run` does.
LOCAL_REFUSALS = {
    "/plaitidl.service.v1.ExecutionService/CreateExecution": (
        "plait console shows a local data dir and runs nothing: start executions with "
        "`plait run` (or from the console of a `plait serve --console-address`)"
    ),
}


class ConsoleServer:
    """Serves the console and the Connect endpoint of one engine.

    Args:
        grpc_target: Where the engine's gRPC server listens (a private loopback target).
        settings: What ``/console.json`` says.
        max_message_bytes: The largest request body accepted.
        static_dir: The built front end (default: the package's ``static`` folder).
        refusals: Methods answered FAILED_PRECONDITION with the given message.
    """

    def __init__(
        self,
        grpc_target: str,
        settings: ConsoleSettings,
        *,
        max_message_bytes: int = 64 << 20,
        static_dir: Path | None = None,
        refusals: dict[str, str] | None = None,
    ) -> None:
        self._target = grpc_target
        self._settings = settings
        self._max = max_message_bytes
        self._static = (static_dir or STATIC_DIR).resolve()
        self._refusals = refusals or {}
        self._channel: grpc.aio.Channel | None = None
        self._forwarder: Forwarder | None = None
        self._runner: web.AppRunner | None = None

    def app(self) -> web.Application:
        """The aiohttp application."""
        app = web.Application(client_max_size=self._max)
        app.router.add_post("/{service}/{method}", self._rpc)
        app.router.add_get("/console.json", self._config)
        app.router.add_get("/{tail:.*}", self._page)
        app.on_response_prepare.append(_add_security_headers)
        return app

    async def start(self, address: str) -> str:
        """Listen on ``HOST:PORT`` (port 0 picks a free one); returns the bound address.

        Raises:
            OSError: The address cannot be bound.
        """
        self._channel = grpc.aio.insecure_channel(
            self._target,
            options=[
                ("grpc.max_receive_message_length", self._max),
                ("grpc.max_send_message_length", self._max),
            ],
        )
        self._forwarder = Forwarder(self._channel)
        host, _, port = address.rpartition(":")
        host = host.strip("[]") or "127.0.0.1"
        self._runner = web.AppRunner(self.app(), access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, int(port))
        await site.start()
        bound = self._runner.addresses
        bound_port = int(bound[0][1]) if bound else int(port)
        shown = f"[{host}]" if ":" in host else host
        return f"{shown}:{bound_port}"

    async def stop(self) -> None:
        """Stop serving (open streams are cut) and close the channel."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._channel is not None:
            await self._channel.close(None)
            self._channel = None

    # -- the Connect endpoint --------------------------------------------------------------
    async def _rpc(self, request: web.Request) -> web.StreamResponse:
        try:
            method = find_method(request.path)
        except ConnectError as err:
            return web.json_response(err.to_json(), status=err.http_status)
        content_type = request.headers.get("Content-Type", "")
        if method.server_streaming:
            codec = stream_codec(content_type)
            if codec is None:
                return _unsupported(_STREAM_TYPES)
            return await self._stream(request, method, codec)
        codec = unary_codec(content_type)
        if codec is None:
            return _unsupported(_UNARY_TYPES)
        try:
            body = await self._unary(request, method, codec)
        except ConnectError as err:
            return web.json_response(err.to_json(), status=err.http_status)
        return web.Response(body=body, content_type=f"application/{codec.name}")

    def _check(self, method: Method) -> Forwarder:
        refusal = self._refusals.get(method.path)
        if refusal is not None:
            raise ConnectError(grpc.StatusCode.FAILED_PRECONDITION, refusal)
        if self._forwarder is None:
            raise ConnectError(grpc.StatusCode.UNAVAILABLE, "the console is not started")
        return self._forwarder

    async def _unary(self, request: web.Request, method: Method, codec: Codec) -> bytes:
        forwarder = self._check(method)
        raw = decompress(await request.read(), request.headers.get("Content-Encoding", ""))
        message = codec.decode(raw, method.request)
        response = await forwarder.unary(
            method, message, call_metadata(request.headers), call_timeout(request.headers)
        )
        return codec.encode(response, method.response)

    async def _stream(
        self, request: web.Request, method: Method, codec: Codec
    ) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": f"application/connect+{codec.name}"})
        await response.prepare(request)
        error: ConnectError | None = None
        try:
            forwarder = self._check(method)
            encoding = request.headers.get("Connect-Content-Encoding", "")
            message = codec.decode(first_message(await request.read(), encoding), method.request)
            items = forwarder.stream(
                method, message, call_metadata(request.headers), call_timeout(request.headers)
            )
            async with contextlib.aclosing(items):
                async for item in items:
                    await response.write(envelope(0, codec.encode(item, method.response)))
        except ConnectError as err:
            error = err
        except (ConnectionResetError, asyncio.CancelledError):
            raise  # the client went away: the forwarded call is cancelled
        await response.write(end_stream(error))
        await response.write_eof()
        return response

    # -- the front end ---------------------------------------------------------------------
    async def _config(self, request: web.Request) -> web.Response:
        return web.json_response(asdict(self._settings), headers={"Cache-Control": "no-store"})

    async def _page(self, request: web.Request) -> web.StreamResponse:
        tail = request.match_info.get("tail", "")
        if tail:
            candidate = (self._static / tail).resolve()
            if candidate.is_file() and self._static in candidate.parents:
                cache = (
                    "public, max-age=31536000, immutable"
                    if tail.startswith("assets/")
                    else "no-cache"
                )
                return web.FileResponse(candidate, headers={"Cache-Control": cache})
            if tail.startswith("assets/"):
                raise web.HTTPNotFound()
        index = self._static / "index.html"
        if not index.is_file():
            return web.Response(text=_NOT_BUILT, content_type="text/html")
        return web.FileResponse(index, headers={"Cache-Control": "no-cache"})


def _unsupported(accepted: str) -> web.Response:
    return web.Response(
        status=415,
        text=f"unsupported content type; use one of: {accepted}",
        headers={"Accept-Post": accepted},
    )


async def _add_security_headers(request: web.Request, response: web.StreamResponse) -> None:
    for key, value in _SECURITY_HEADERS.items():
        response.headers.setdefault(key, value)
