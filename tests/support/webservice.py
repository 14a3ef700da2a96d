"""A small web service for HTTP task tests: a real `ThreadingHTTPServer` on 127.0.0.1.

Routes (every request is recorded in `WebService.requests`):

- ``GET /users/<id>``: ``{"data": {"user": {"name": "user<id>", "id": <id>}}}``.
- ``POST /report/<label>``: needs ``Authorization: Bearer <token>``; answers the receipt
  ``{"accepted": len(items), "total": total, "names": [...]}`` of the JSON body
  ``{"total": int, "items": [{"name", "qty"}, ...]}``. Labels change the behaviour:
  ``flaky`` answers 503 to its first request, ``slow`` waits 3 s first, ``forbidden`` answers
  403 with the Authorization header it got in the body (a service that leaks what it received),
  ``missing`` answers 404.
- Anything else: 404.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Request:
    """One request the service received."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class WebService:
    """The running service."""

    port: int
    token: str
    requests: list[Request] = field(default_factory=list)
    seen: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def hits(self, label: str) -> int:
        """Requests received for a report label."""
        with self.lock:
            return self.seen.get(label, 0)


def _handler(service: WebService) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _answer(self, code: int, body: object) -> None:
            data = json.dumps(body).encode() if not isinstance(body, bytes) else body
            try:
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up waiting (a timeout test)

        def _record(self) -> Request:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            req = Request(
                self.command, self.path, dict(self.headers), json.loads(raw) if raw else None
            )
            with service.lock:
                service.requests.append(req)
            return req

        def do_GET(self) -> None:
            self._record()
            parts = self.path.strip("/").split("/")
            if len(parts) == 2 and parts[0] == "users" and parts[1].isdigit():
                uid = int(parts[1])
                self._answer(200, {"data": {"user": {"name": f"user{uid}", "id": uid}}})
            else:
                self._answer(404, {"error": f"no {self.path}"})

        def do_POST(self) -> None:
            req = self._record()
            parts = self.path.strip("/").split("/")
            if len(parts) != 2 or parts[0] != "report":
                self._answer(404, {"error": f"no {self.path}"})
                return
            label = parts[1]
            with service.lock:
                count = service.seen[label] = service.seen.get(label, 0) + 1
            auth = req.headers.get("Authorization", "")
            if label == "forbidden":
                self._answer(403, {"error": f"not allowed with {auth}"})
            elif label == "missing":
                self._answer(404, {"error": "no such report"})
            elif label == "flaky" and count == 1:
                self._answer(503, {"error": "try again"})
            elif auth != f"Bearer {service.token}":
                self._answer(401, {"error": "bad token"})
            else:
                if label == "slow":
                    time.sleep(3)
                body = req.body or {}
                items = body.get("items", [])
                receipt = {
                    "accepted": len(items),
                    "total": body.get("total", 0),
                    "names": [i["name"] for i in items],
                }
                self._answer(200, receipt)

    return Handler


@contextmanager
def web_service(token: str) -> Iterator[WebService]:
    """The service on a free port of 127.0.0.1, for the duration of the block."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(WebService(0, token)))
    service = WebService(int(server.server_address[1]), token)
    server.RequestHandlerClass = _handler(service)
    thread = threading.Thread(target=server.serve_forever, name="web-service", daemon=True)
    thread.start()
    try:
        yield service
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
