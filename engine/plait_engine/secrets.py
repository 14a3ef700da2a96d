"""Secrets for tasks that run inside the engine: where values come from, and keeping them out of
what the engine records.

A task names the secrets it needs (`TaskMetadata.secrets`); the executor that runs it asks a
`SecretProvider` for each value when the attempt asks for it. Values never travel in templates,
inputs, outputs or events. What an attempt prints or returns as an error passes a `Scrubber`
that replaces every value handed out to it with ``***``.

The Python worker applies the same rules to the plugins it hosts (``plait._plugins`` imports
this module, which needs nothing else of the engine).
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Mapping
from pathlib import Path

from plaitidl.core.v1 import errors_pb2, tasks_pb2

# A secret's name is a file name in the secrets folder: nothing that could leave it.
SECRET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,252}")
ENV_VAR = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,254}")
MASK = "***"
# Shorter values are not secrets worth the name, and masking them would mangle every line.
MIN_SCRUBBED = 4


class SecretNotFoundError(LookupError):
    """No provider has the secret (the message names it and where it was looked for)."""


def default_env_var(name: str) -> str:
    """``PLAIT_SECRET_<NAME>``: the name upper-cased, anything outside [A-Z0-9] as ``_``."""
    return "PLAIT_SECRET_" + re.sub(r"[^A-Z0-9]", "_", name.upper())


class SecretProvider:
    """Reads secrets from files in a folder, then from environment variables.

    Args:
        directory: A folder holding one file per secret, named like the secret (trailing
            newlines are dropped); None for none.
        environ: The environment to read ``env_var`` (or ``PLAIT_SECRET_<NAME>``) from.
    """

    def __init__(self, directory: Path | None = None, environ: Mapping[str, str] | None = None):
        self._dir = directory
        self._env = os.environ if environ is None else environ

    def get(self, request: tasks_pb2.SecretRequest) -> str:
        """The value of a secret.

        Raises:
            SecretNotFoundError: Neither the folder nor the environment has it.
        """
        name = request.name
        if not SECRET_NAME.fullmatch(name):
            raise SecretNotFoundError(f"secret name {name!r} is not valid")
        if self._dir is not None:
            path = self._dir / name
            try:
                return path.read_text().rstrip("\r\n")
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise SecretNotFoundError(
                    f"secret {name!r}: cannot read {path}: {exc.strerror}"
                ) from None
        var = request.env_var or default_env_var(name)
        value = self._env.get(var)
        if value is None:
            where = f"{self._dir}/{name} or " if self._dir is not None else ""
            raise SecretNotFoundError(f"secret {name!r} not found (looked for {where}${var})")
        return value


class Scrubber:
    """Replaces the secret values handed out to one attempt with ``***`` in text."""

    def __init__(self) -> None:
        self._values: list[str] = []
        self._lock = threading.Lock()

    def add(self, value: str) -> None:
        """Remember a value handed out (and its lines, for multi-line secrets)."""
        with self._lock:
            for v in (value, *value.splitlines()):
                if len(v) >= MIN_SCRUBBED and v not in self._values:
                    self._values.append(v)
            self._values.sort(key=len, reverse=True)

    def __call__(self, text: str) -> str:
        """`text` without any remembered value."""
        with self._lock:
            values = list(self._values)
        for v in values:
            if v in text:
                text = text.replace(v, MASK)
        return text

    def error(self, err: errors_pb2.ExecutionError) -> errors_pb2.ExecutionError:
        """The error with its code, message and details scrubbed (in place)."""
        err.code = self(err.code)
        err.message = self(err.message)
        err.details = self(err.details)
        return err


__all__ = [
    "ENV_VAR",
    "MASK",
    "SECRET_NAME",
    "Scrubber",
    "SecretNotFoundError",
    "SecretProvider",
    "default_env_var",
]
