"""Operators' logs of `plait serve` and `plait worker`: text or JSON lines on stderr."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time

LEVELS = ("debug", "info", "warning", "error")
_HANDLER = "plait-operator-log"
FORMATS = ("text", "json")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message (and the exception)."""

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """``--log-format`` and ``--log-level`` (defaults: ``$PLAIT_LOG_FORMAT``, text;
    ``$PLAIT_LOG_LEVEL``, info)."""
    p.add_argument(
        "--log-format", choices=FORMATS, help="text or json lines on stderr (default text)"
    )
    p.add_argument("--log-level", choices=LEVELS, help="least level logged (default info)")


def configure(log_format: str | None, log_level: str | None) -> None:
    """Send log records of that level and above to stderr, as text or JSON lines."""
    fmt = log_format or os.environ.get("PLAIT_LOG_FORMAT") or "text"
    level = (log_level or os.environ.get("PLAIT_LOG_LEVEL") or "info").upper()
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.set_name(_HANDLER)
    root = logging.getLogger()
    # Replace our own handler of an earlier call, keep anyone else's (the task capture's).
    root.handlers[:] = [h for h in root.handlers if h.get_name() != _HANDLER] + [handler]
    root.setLevel(level)
    # gRPC's own chatter is not the operator's business at info level.
    logging.getLogger("grpc").setLevel(max(logging.WARNING, root.level))
