"""The engine's configuration: every limit and setting, in one place.

`plait serve` reads it from, lowest to highest precedence: the defaults of `EngineConfig`, a TOML
file
(``--config FILE`` or ``$PLAIT_CONFIG``), ``PLAIT_*`` environment variables (``PLAIT_ADDRESS``,
``PLAIT_DATA_DIR``, ``PLAIT_MAX_NODES``, ...) and command-line flags.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from plait_engine.compiler import Limits


class ConfigError(ValueError):
    """A configuration source holds an unknown key or a value of the wrong type."""


def _default_data_dir() -> Path:
    # The server keeps its state apart from the embedded runner's (~/.plait): the two would
    # otherwise resume each other's executions.
    return Path.home() / ".plait" / "server"


# The embedded engine (`plait run`, a workflow called from Python) runs its own user's
# workflows, so its limits are there only to stop runaway recursion, not to protect a shared
# server: a spec of a million nodes runs. A server keeps the protective `EngineConfig` defaults.
EMBEDDED_DEFAULTS: dict[str, object] = {"max_nodes": 1_000_000}


@dataclass
class EngineConfig:
    """Everything an engine needs.

    Attributes:
        address: ``HOST:PORT`` the gRPC server listens on; port 0 picks a free port.
        data_dir: Engine state (SQLite database, blobs, ``engine.addr``).
        max_nodes: Nodes per workflow or dynamic spec.
        max_depth: Nesting depth of dynamic specs.
        max_literal_bytes: Serialized size of one inline literal.
        max_message_bytes: Largest gRPC message received or sent.
        heartbeat_interval: Seconds between worker heartbeats.
        lease_duration: Seconds a worker session stays alive without a message.
        execution_lease: Seconds an engine replica owns an execution without renewing; another
            replica adopts it after that.
        system_retries: Attempts allowed for system errors (lost worker, crash) per node.
        default_timeout: Seconds an attempt may run when its task sets no timeout (0: none).
        sqlite_synchronous: SQLite's ``synchronous`` level: NORMAL survives a crash of the
            engine process, FULL also an OS crash or power loss (an fsync per commit).
        token: When set, every RPC but health checks must send ``authorization: Bearer <token>``
            (one admin token; see `token_file` for scoped tokens).
        tls_cert: PEM certificate chain; with `tls_key`, the server speaks TLS only.
        tls_key: PEM private key.
        token_file: A file mapping tokens to a role (admin, client, worker) and projects.
        allow_process: Patterns of the commands process targets may run (``fnmatch`` on the
            program, e.g. ``/opt/tasks/*``); empty refuses every process target.
        process_user: Run process targets as this user (the engine must be allowed to).
        max_inputs_bytes: Serialized size of an execution's inputs.
        max_log_bytes: Output kept per attempt; the rest is counted, not stored.
        retention: Seconds a finished execution is kept (0: forever); then it is deleted with
            its nodes, events, logs and blobs.
        store: Where state lives: empty for the SQLite file in the data dir, or a
            ``postgresql://`` URL.
        blob_url: Where blobs live (payloads over 256 KiB, offloaded values, process-target
            files): empty for ``DATA_DIR/blobs``; a folder (``/PATH`` or ``file:///PATH``, a
            shared mount for several replicas); ``s3://BUCKET/PREFIX`` (``plait[s3]``) or
            ``gs://BUCKET/PREFIX`` (``plait[gcs]``). Credentials come from the client
            libraries' standard environment variables and files.
        blob_endpoint: The object store's endpoint URL, for S3-compatible servers (MinIO,
            Ceph, R2, ...); empty: the library's default or ``AWS_ENDPOINT_URL_S3``.
        log_format: ``text`` or ``json`` lines on stderr.
        log_level: ``debug``, ``info``, ``warning`` or ``error``.
        console_address: ``HOST:PORT`` of the web console and JSON/HTTP endpoint (empty: off).
        cluster: Run as one of several replicas sharing the store: attempts go through the
            store's dispatch queue, so a worker connected to any replica can run them (on for a
            PostgreSQL store).
        plugins: Task types whose installed plugin runs inside the engine (entry points of
            ``plait.task_types``; ``*`` for every installed one). Tasks of other types go to
            workers that declare the type. The embedded engine runs every installed plugin.
        secrets_dir: A folder of secret files (one per secret, named like it) for the tasks
            that run inside the engine; then ``PLAIT_SECRET_<NAME>`` environment variables.
    """

    address: str = "127.0.0.1:8089"
    data_dir: Path = field(default_factory=_default_data_dir)
    max_nodes: int = 10_000
    max_depth: int = 64
    max_literal_bytes: int = 1 << 20
    max_message_bytes: int = 64 << 20
    heartbeat_interval: float = 2.0
    lease_duration: float = 10.0
    execution_lease: float = 10.0
    system_retries: int = 3
    default_timeout: float = 24 * 3600.0
    sqlite_synchronous: str = "NORMAL"
    token: str | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    token_file: Path | None = None
    allow_process: tuple[str, ...] = ()
    process_user: str | None = None
    max_inputs_bytes: int = 32 << 20
    max_log_bytes: int = 1 << 20
    retention: float = 0.0
    store: str = ""
    blob_url: str = ""
    blob_endpoint: str = ""
    log_format: str = "text"
    log_level: str = "info"
    console_address: str = ""
    cluster: bool = False
    plugins: tuple[str, ...] = ()
    secrets_dir: Path | None = None

    def limits(self) -> Limits:
        """What the compiler accepts."""
        return Limits(
            max_nodes=self.max_nodes,
            max_depth=self.max_depth,
            max_literal_bytes=self.max_literal_bytes,
        )


_FIELDS = {f.name: f for f in dataclasses.fields(EngineConfig)}
_KINDS: dict[str, type] = {
    "address": str,
    "data_dir": Path,
    "max_nodes": int,
    "max_depth": int,
    "max_literal_bytes": int,
    "max_message_bytes": int,
    "heartbeat_interval": float,
    "lease_duration": float,
    "execution_lease": float,
    "system_retries": int,
    "default_timeout": float,
    "sqlite_synchronous": str,
    "token": str,
    "tls_cert": Path,
    "tls_key": Path,
    "token_file": Path,
    "allow_process": tuple,
    "process_user": str,
    "max_inputs_bytes": int,
    "max_log_bytes": int,
    "retention": timedelta,
    "store": str,
    "blob_url": str,
    "blob_endpoint": str,
    "log_format": str,
    "log_level": str,
    "console_address": str,
    "cluster": bool,
    "plugins": tuple,
    "secrets_dir": Path,
}
# One line of help per setting, for `plait serve --help` (its flags are generated from these).
HELP: dict[str, str] = {
    "address": "HOST:PORT to listen on (default 127.0.0.1:8089; port 0 picks a free one)",
    "data_dir": "engine state: SQLite database, blobs (default ~/.plait/server)",
    "max_nodes": "nodes per workflow or dynamic spec (default 10000)",
    "max_depth": "nesting depth of dynamic specs (default 64)",
    "max_literal_bytes": "size of one inline literal; larger values are offloaded (1 MiB)",
    "max_message_bytes": "largest gRPC message received or sent (default 64 MiB)",
    "heartbeat_interval": "seconds between worker heartbeats (default 2)",
    "lease_duration": "seconds a silent worker session lives (default 10)",
    "execution_lease": "seconds an engine owns an execution without renewing (default 10)",
    "system_retries": "retries of system errors per node (default 3)",
    "default_timeout": "seconds an attempt may run when its task sets none (default 86400)",
    "sqlite_synchronous": "NORMAL (default: survives a process crash) or FULL (also an OS crash)",
    "token": "one admin token: every call sends 'authorization: Bearer TOKEN'",
    "tls_cert": "PEM certificate chain (with --tls-key): serve TLS only",
    "tls_key": "PEM private key",
    "token_file": "TOML file of scoped tokens: a role (admin, client, worker) and projects each",
    "allow_process": (
        "allow process targets whose program matches this fnmatch pattern of its absolute "
        "path, e.g. /opt/tasks/* (repeat; default: none)"
    ),
    "process_user": "run process targets as this user",
    "max_inputs_bytes": "size of an execution's inputs (default 32 MiB)",
    "max_log_bytes": "output kept per attempt (default 1 MiB)",
    "retention": "keep finished executions this long, e.g. 30d (default: forever)",
    "store": "postgresql://... URL (default: SQLite in the data dir)",
    "blob_url": (
        "where blobs live: a folder (/PATH, file:///PATH: shared by replicas), s3://BUCKET/PREFIX "
        "or gs://BUCKET/PREFIX (default: DATA_DIR/blobs)"
    ),
    "blob_endpoint": "endpoint URL of an S3-compatible object store (default: AWS's)",
    "log_format": "text or json log lines on stderr (default text)",
    "log_level": "debug, info, warning or error (default info)",
    "console_address": "HOST:PORT of the web console and JSON/HTTP endpoint (default off)",
    "cluster": "one of several replicas on one store: dispatch through the store (true/false)",
    "plugins": (
        "run this task type's installed plugin inside the engine, e.g. sql or http (repeat; "
        "* for all; default: none, workers serve every type)"
    ),
    "secrets_dir": "folder of secret files (one per secret) for tasks run inside the engine",
}


def setting_kind(name: str) -> type:
    """How a setting is parsed: int, float, str, Path, tuple (a list) or timedelta."""
    return _KINDS[name]


_BOOLS = {"true": True, "1": True, "yes": True, "on": True,
          "false": False, "0": False, "no": False, "off": False}  # fmt: skip
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> float:
    """Seconds in a duration like ``90s``, ``1h30m``, ``30d`` or a plain number of seconds.

    Raises:
        ValueError: Not a duration.
    """
    text = text.strip().replace(" ", "")
    try:
        return float(text)
    except ValueError:
        pass
    total, at = 0.0, 0
    for m in _DURATION.finditer(text):
        if m.start() != at:
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        at = m.end()
    if at != len(text) or not text:
        raise ValueError(text)
    return total


def _coerce(key: str, value: object, source: str) -> object:
    kind = _KINDS[key]
    try:
        if kind is tuple:
            if isinstance(value, str):
                return tuple(p.strip() for p in value.split(",") if p.strip())
            if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
                return tuple(value)
            raise ValueError(value)
        if kind is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in _BOOLS:
                return _BOOLS[value.lower()]
            raise ValueError(value)
        if kind is timedelta:
            if isinstance(value, int | float) and not isinstance(value, bool):
                return float(value)
            if isinstance(value, str):
                return parse_duration(value)
            raise ValueError(value)
        if kind is int:
            if isinstance(value, bool | float):
                raise ValueError(value)
            return int(value)  # type: ignore[call-overload]
        if kind is float:
            if isinstance(value, bool):
                raise ValueError(value)
            return float(value)  # type: ignore[arg-type]
        if not isinstance(value, str):
            raise ValueError(value)
        return Path(value).expanduser() if kind is Path else value
    except ValueError:
        what = {
            int: "a number",
            float: "a number",
            tuple: "a list of strings (or a comma-separated string)",
            timedelta: "a duration such as 90s, 12h or 30d",
            bool: "true or false",
        }.get(kind, "a string")
        raise ConfigError(f"{source}: {key} must be {what}, got {value!r}") from None


def _apply(values: dict[str, Any], pairs: Mapping[str, object], source: str) -> None:
    for key, value in pairs.items():
        if key not in _FIELDS:
            raise ConfigError(f"{source}: unknown key {key!r}; known keys: {sorted(_FIELDS)}")
        values[key] = _coerce(key, value, source)


def load_config(
    config_file: str | Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, object] | None = None,
    defaults: Mapping[str, object] | None = None,
) -> EngineConfig:
    """Build a `EngineConfig` from defaults, a TOML file, the environment and flags.

    Args:
        config_file: A TOML file of top-level ``key = value`` pairs named like the fields of
            `EngineConfig`; ``None`` falls back to ``$PLAIT_CONFIG`` (no file when unset).
        env: The environment (default `os.environ`); ``PLAIT_<FIELD>`` variables are read.
        overrides: Values from flags; ``None`` values are ignored (flag not given).
        defaults: Values that replace the built-in defaults (`EMBEDDED_DEFAULTS` for the
            embedded engine); the file, the environment and flags still win over them.

    Returns:
        The merged configuration.

    Raises:
        ConfigError: An unknown key in the file, a value of the wrong type, or an unreadable
            file.
    """
    env = os.environ if env is None else env
    values: dict[str, Any] = dict(defaults or {})
    path = config_file or env.get("PLAIT_CONFIG") or None
    if path:
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path}: {exc}") from None
        _apply(values, data, f"config file {path}")
    _apply(
        values,
        {k: env[f"PLAIT_{k.upper()}"] for k in _FIELDS if f"PLAIT_{k.upper()}" in env},
        "environment",
    )
    _apply(values, {k: v for k, v in (overrides or {}).items() if v is not None}, "flags")
    config = EngineConfig(**values)
    if (config.tls_cert is None) != (config.tls_key is None):
        raise ConfigError("tls_cert and tls_key must be given together")
    if config.max_message_bytes <= 0:
        raise ConfigError("max_message_bytes must be positive")
    config.sqlite_synchronous = config.sqlite_synchronous.upper()
    if config.log_format not in ("text", "json"):
        raise ConfigError("log_format must be text or json")
    if config.log_level.lower() not in ("debug", "info", "warning", "error"):
        raise ConfigError("log_level must be debug, info, warning or error")
    if config.token and config.token_file:
        raise ConfigError("give token or token_file, not both")
    if config.sqlite_synchronous not in ("OFF", "NORMAL", "FULL", "EXTRA"):
        raise ConfigError("sqlite_synchronous must be one of OFF, NORMAL, FULL, EXTRA")
    config.store = config.store.strip()
    if config.store and not config.store.startswith(("postgresql://", "postgres://")):
        raise ConfigError("store must be empty (SQLite in data_dir) or a postgresql:// URL")
    config.blob_url = config.blob_url.strip()
    _check_blob_url(config.blob_url)
    return config


def _check_blob_url(url: str) -> None:
    scheme = url.partition("://")[0] if "://" in url else ""
    if scheme not in ("", "file", "s3", "gs", "gcs"):
        raise ConfigError(
            "blob_url must be a folder (/PATH, file:///PATH), s3://BUCKET/PREFIX or "
            f"gs://BUCKET/PREFIX, got {scheme}://..."
        )
    if url and not scheme and not Path(url).expanduser().is_absolute():
        raise ConfigError(f"blob_url {url!r}: give the folder as an absolute path")
