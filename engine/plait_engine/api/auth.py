"""Tokens: who is calling, with which role, for which projects.

A token file (TOML) maps each token to a name, a role and projects::

    [[tokens]]
    name = "ci"                      # shown in logs and errors instead of the token
    token = "a-long-random-secret"   # at least 16 characters
    role = "client"                  # admin, client or worker
    projects = ["etl", "ml"]         # or ["*"] for every project

    [[tokens]]
    name = "gpu-workers"
    token_sha256 = "9f86d0..."       # instead of `token`: the hex SHA-256 of the token
    role = "worker"
    projects = ["ml"]

`AuthInterceptor` resolves the ``authorization: Bearer <token>`` metadata of every call to a
`Principal` (comparing SHA-256 digests with `hmac.compare_digest`, against every entry, so the
time taken tells nothing about the token), checks the role against the method
(`scopes.permitted`) and every project the request names (`scopes.named_projects`), and makes
the principal available to handlers through `current_principal`. Tokens are never logged, not
even in errors: only their names are.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import tomllib
from collections.abc import AsyncIterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import grpc.aio

from plait_engine.api.interceptors import (
    Behavior,
    Context,
    Continuation,
    Handler,
    Wrap,
    abort_with,
    is_unparseable,
    iterate,
    rewrap,
)
from plait_engine.api.scopes import OPEN_PREFIXES, Role, named_projects, permitted
from plait_engine.config import ConfigError
from plait_engine.errors import EngineError, FieldViolation, PermissionDenied, Unauthenticated

log = logging.getLogger("plait_engine.auth")

MIN_TOKEN_CHARS = 16
_ENTRY_KEYS = frozenset({"name", "token", "token_sha256", "role", "projects"})
_HEX_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Principal:
    """Who a call comes from.

    Attributes:
        name: The token's name (from the token file), safe to log.
        role: What the token may call.
        projects: The projects it may touch; None for every project.
    """

    name: str
    role: Role
    projects: frozenset[str] | None

    def may_use(self, project: str) -> bool:
        """Whether the principal may touch `project`."""
        return self.projects is None or project in self.projects


# A server without tokens: every call may do everything.
OPEN = Principal("anonymous", Role.ADMIN, None)
_CURRENT: ContextVar[Principal] = ContextVar("plait_principal", default=OPEN)


def current_principal() -> Principal:
    """The principal of the call being handled (`OPEN` on a server without tokens)."""
    return _CURRENT.get()


def require_project(project: str, field: str) -> None:
    """Refuse the current call unless its principal may touch `project`.

    For handlers whose requests name a project other than through an identifier (a payload
    URI, say); the interceptor checks the others.

    Raises:
        PermissionDenied: Naming the project and the field.
    """
    principal = current_principal()
    if not principal.may_use(project):
        raise _denied(principal, field, project)


def _denied(principal: Principal, field: str, project: str) -> PermissionDenied:
    message = f"token {principal.name!r} may not use project {project!r}"
    return PermissionDenied(f"{field}: {message}", [FieldViolation(field, message)])


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class TokenTable:
    """The tokens a server accepts.

    Args:
        entries: ``(SHA-256 digest of the token, principal)`` pairs.
    """

    def __init__(self, entries: Sequence[tuple[bytes, Principal]]) -> None:
        self._entries = tuple(entries)

    @classmethod
    def single_admin(cls, token: str) -> TokenTable:
        """The one admin token of ``--token``."""
        return cls([(_digest(token), Principal("token", Role.ADMIN, None))])

    @classmethod
    def load(cls, path: Path) -> TokenTable:
        """Read a token file (see the module's docstring for its format).

        Raises:
            ConfigError: The file is unreadable or an entry is invalid (named by its index and
                name; never by its token).
        """
        try:
            data = tomllib.loads(path.read_text())
        except OSError as exc:
            raise ConfigError(f"cannot read token file {path}: {exc.strerror}") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"token file {path}: {exc}") from None
        unknown = sorted(set(data) - {"tokens"})
        if unknown:
            raise ConfigError(f"token file {path}: unknown key(s) {unknown}; expected [[tokens]]")
        entries = data.get("tokens")
        if not isinstance(entries, list) or not entries:
            raise ConfigError(f"token file {path}: no [[tokens]] entries")
        table: list[tuple[bytes, Principal]] = []
        names: dict[bytes, str] = {}
        for i, entry in enumerate(entries):
            where = f"token file {path}: tokens[{i}]"
            digest, principal = _entry(entry, where)
            if digest in names:
                raise ConfigError(
                    f"{where} ({principal.name}) repeats the token of {names[digest]}"
                )
            names[digest] = principal.name
            table.append((digest, principal))
        return cls(table)

    def resolve(self, token: str) -> Principal | None:
        """The principal of a token, or None.

        Every entry is compared, in constant time, whatever matches: neither the position of a
        match nor a common prefix shows in the time taken.
        """
        digest = _digest(token)
        found: Principal | None = None
        for expected, principal in self._entries:
            if hmac.compare_digest(expected, digest) and found is None:
                found = principal
        return found

    def __len__(self) -> int:
        return len(self._entries)


def _entry(entry: object, where: str) -> tuple[bytes, Principal]:
    """One ``[[tokens]]`` table: its digest and principal."""
    if not isinstance(entry, dict):
        raise ConfigError(f"{where} must be a table")
    unknown = sorted(set(entry) - _ENTRY_KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; known: {sorted(_ENTRY_KEYS)}")
    name = entry.get("name")
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{where}: name must be a non-empty string")
    where = f"{where} ({name})"
    token, hashed = entry.get("token"), entry.get("token_sha256")
    if (token is None) == (hashed is None):
        raise ConfigError(f"{where}: give exactly one of token and token_sha256")
    if token is not None:
        if not isinstance(token, str) or len(token) < MIN_TOKEN_CHARS:
            raise ConfigError(
                f"{where}: token must be a string of at least {MIN_TOKEN_CHARS} characters"
            )
        digest = _digest(token)
    else:
        if not isinstance(hashed, str) or not _HEX_SHA256.fullmatch(hashed.lower()):
            raise ConfigError(f"{where}: token_sha256 must be 64 hex digits")
        digest = bytes.fromhex(hashed)
    try:
        role = Role(entry.get("role"))
    except ValueError:
        raise ConfigError(f"{where}: role must be one of admin, client, worker") from None
    projects = entry.get("projects")
    if (
        not isinstance(projects, list)
        or not projects
        or not all(isinstance(p, str) and p for p in projects)
    ):
        raise ConfigError(f'{where}: projects must be a non-empty list of names, or ["*"]')
    if "*" in projects and len(projects) > 1:
        raise ConfigError(f'{where}: "*" means every project and stands alone')
    scope = None if projects == ["*"] else frozenset(projects)
    return digest, Principal(name, role, scope)


def _bearer(metadata: Sequence[tuple[str, str | bytes]] | None) -> str | None:
    for key, value in metadata or ():
        if key == "authorization":
            text = value.decode(errors="replace") if isinstance(value, bytes) else value
            scheme, _, token = text.strip().partition(" ")
            return token.strip() if scheme.lower() == "bearer" else None
    return None


def _refuse(exc: EngineError) -> Wrap:
    def wrap(behavior: Behavior, handler: Handler) -> Behavior:
        async def deny(request: Any, context: Context) -> Any:
            await abort_with(context, exc)

        if not handler.response_streaming:
            return deny

        async def deny_stream(request: Any, context: Context) -> AsyncIterator[Any]:
            await abort_with(context, exc)
            yield None  # pragma: no cover - abort raises first

        return deny_stream

    return wrap


def _check(principal: Principal, request: Any) -> None:
    if principal.projects is None or is_unparseable(request):
        return
    for field, project in named_projects(request):
        if not principal.may_use(project):
            raise _denied(principal, field, project)


async def _chain(first: Any, rest: AsyncIterator[Any]) -> AsyncIterator[Any]:
    yield first
    async for item in rest:
        yield item


async def _admit(principal: Principal, request: Any, handler: Handler) -> Any:
    """The request, once the projects it names are the principal's (for a stream: those of
    its first message, which opens it)."""
    if not handler.request_streaming:
        _check(principal, request)
        return request
    if principal.projects is None:
        return request
    requests = aiter(request)
    try:
        first = await anext(requests)
    except StopAsyncIteration:
        return requests
    _check(principal, first)
    return _chain(first, requests)


def _log_denied(method: str, principal: Principal, exc: PermissionDenied) -> None:
    log.info("refused %s to token %r: %s", method, principal.name, exc.message)


def _scoped(principal: Principal, method: str) -> Wrap:
    def wrap(behavior: Behavior, handler: Handler) -> Behavior:
        if handler.response_streaming:

            async def stream(request: Any, context: Context) -> AsyncIterator[Any]:
                # Each call runs in its own task (its own context): no reset needed, and a
                # generator may be finalized elsewhere, where a reset would fail.
                _CURRENT.set(principal)
                try:
                    request = await _admit(principal, request, handler)
                except PermissionDenied as exc:
                    _log_denied(method, principal, exc)
                    await abort_with(context, exc)
                async for item in iterate(behavior(request, context)):
                    yield item

            return stream

        async def unary(request: Any, context: Context) -> Any:
            reset = _CURRENT.set(principal)
            try:
                try:
                    request = await _admit(principal, request, handler)
                except PermissionDenied as exc:
                    _log_denied(method, principal, exc)
                    await abort_with(context, exc)
                return await behavior(request, context)
            finally:
                _CURRENT.reset(reset)

        return unary

    return wrap


class AuthInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Refuses calls without a known token (UNAUTHENTICATED), calls the token's role may not
    make and requests naming projects the token may not use (PERMISSION_DENIED).

    Health checks and reflection need no token. Put it before `ErrorInterceptor`.

    Args:
        tokens: The accepted tokens.
    """

    def __init__(self, tokens: TokenTable) -> None:
        self._tokens = tokens

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> Handler:
        """Pass calls on with their principal; refuse the others."""
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method.startswith(OPEN_PREFIXES):
            return handler
        token = _bearer(handler_call_details.invocation_metadata)
        principal = self._tokens.resolve(token) if token else None
        if principal is None:
            log.debug("refused %s: %s token", method, "unknown" if token else "no")
            return rewrap(
                handler,
                _refuse(
                    Unauthenticated(
                        "missing or unknown token: send metadata 'authorization: Bearer <token>'"
                    )
                ),
            )
        if not permitted(principal.role, method):
            log.info(
                "refused %s to token %r (role %s)", method, principal.name, principal.role.value
            )
            return rewrap(
                handler,
                _refuse(
                    PermissionDenied(
                        f"token {principal.name!r} (role {principal.role.value}) may not call "
                        f"{method}"
                    )
                ),
            )
        log.debug("%s by token %r", method, principal.name)
        return rewrap(handler, _scoped(principal, method))


__all__ = [
    "OPEN",
    "AuthInterceptor",
    "Principal",
    "TokenTable",
    "current_principal",
    "require_project",
]
