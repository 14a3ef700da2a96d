"""Registered templates for the compiler, fetched from the store ahead of compiling.

The compiler is pure and synchronous; the store is async. `compile_resolving` bridges them:
it compiles with a resolver over what is already known, notes every identifier the compiler
asked for and did not get, fetches those, and compiles again, until nothing new is missing
(reference chains are short: usually one round, two for a registered workflow that calls other
registered templates). The last compile's verdict is the answer.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from typing import TypeVar

from plaitidl.core.v1 import identifier_pb2, tasks_pb2, workflow_pb2

from plait_engine import ids
from plait_engine.store import Store, TemplateKind

_T = TypeVar("_T")
Template = tasks_pb2.TaskTemplate | workflow_pb2.WorkflowTemplate | workflow_pb2.LaunchPlan
_PARSERS: dict[TemplateKind, Callable[[bytes], Template]] = {
    TemplateKind.TASK: tasks_pb2.TaskTemplate.FromString,
    TemplateKind.WORKFLOW: workflow_pb2.WorkflowTemplate.FromString,
    TemplateKind.LAUNCH_PLAN: workflow_pb2.LaunchPlan.FromString,
}
_MAX_ROUNDS = 16
# How long "not registered" is believed by `get_recent` (seconds), and how many such answers
# are kept at most.
ABSENT_TTL = 1.0
_MAX_ABSENT = 50_000


def request_key(kind: TemplateKind, id: identifier_pb2.Identifier) -> tuple[TemplateKind, str]:
    """How a lookup is remembered: by kind and canonical key (version "" means newest)."""
    return kind, ids.id_key(id)


class TemplateSource:
    """Reads registered templates from the store; remembers immutable versions.

    Args:
        store: The store.
    """

    def __init__(self, store: Store) -> None:
        self._store = store
        self._versions: dict[tuple[TemplateKind, str], Template] = {}
        # (kind, versioned key) -> until when it is taken as not registered (`get_recent`).
        self._absent: dict[tuple[TemplateKind, str], float] = {}

    async def resolve_key(self, kind: TemplateKind, id: identifier_pb2.Identifier) -> str | None:
        """The stored key an identifier names (the newest version when it has none)."""
        if id.version:
            return ids.id_key(id)
        return await self._store.latest_template_key(kind, ids.name_prefix(id))

    async def get(self, kind: TemplateKind, id: identifier_pb2.Identifier) -> Template | None:
        """A registered template, or None."""
        key = await self.resolve_key(kind, id)
        if key is None:
            return None
        found = self._versions.get((kind, key))
        if found is None:
            body = await self._store.get_template(kind, key)
            if body is None:
                return None
            found = _PARSERS[kind](body)
            self._versions[(kind, key)] = found  # versions are immutable
        return found

    async def get_recent(
        self, kind: TemplateKind, id: identifier_pb2.Identifier
    ) -> Template | None:
        """`get` for a versioned identifier, where an answer of "not registered" up to
        `ABSENT_TTL` old will do.

        For the check of templates a dynamic spec embeds: a recursive dynamic embeds the same
        unregistered versions in each of thousands of specs, and asking the store every time
        was a tenth of a merge sort's work. A registration in that second is seen as if it had
        come just after the compile. Registration itself checks with `get`, never this.
        """
        key = (kind, ids.id_key(id))
        now = time.monotonic()
        until = self._absent.get(key)
        if until is not None and until > now:
            return None
        found = await self.get(kind, id)
        if found is None:
            if len(self._absent) >= _MAX_ABSENT:
                self._absent.clear()
            self._absent[key] = now + ABSENT_TTL
        else:
            self._absent.pop(key, None)
        return found

    def registered(self, kind: TemplateKind, key: str) -> None:
        """This replica registered `key`: `get_recent` asks the store again at once."""
        self._absent.pop((kind, key), None)

    async def fetch(
        self, wanted: Iterable[tuple[TemplateKind, identifier_pb2.Identifier]]
    ) -> dict[tuple[TemplateKind, str], Template | None]:
        """Several lookups, by `request_key`."""
        out: dict[tuple[TemplateKind, str], Template | None] = {}
        for kind, id in wanted:
            out[request_key(kind, id)] = await self.get(kind, id)
        return out


class KnownResolver:
    """A `compiler.Resolver` over templates fetched so far (and an overlay that wins), which
    records what it was asked for and did not know."""

    def __init__(
        self,
        known: dict[tuple[TemplateKind, str], Template | None],
        overlay: dict[tuple[TemplateKind, str], Template] | None = None,
    ) -> None:
        self.known = known
        self.overlay = overlay or {}
        self.missing: dict[tuple[TemplateKind, str], identifier_pb2.Identifier] = {}

    def _get(self, kind: TemplateKind, id: identifier_pb2.Identifier) -> Template | None:
        k = request_key(kind, id)
        if k in self.overlay:
            return self.overlay[k]
        if k in self.known:
            return self.known[k]
        self.missing[k] = id
        return None

    def get_task(self, id: identifier_pb2.Identifier) -> tasks_pb2.TaskTemplate | None:
        """A task, or None (recorded as missing when unknown)."""
        found = self._get(TemplateKind.TASK, id)
        return found if isinstance(found, tasks_pb2.TaskTemplate) else None

    def get_workflow(self, id: identifier_pb2.Identifier) -> workflow_pb2.WorkflowTemplate | None:
        """A workflow, or None (recorded as missing when unknown)."""
        found = self._get(TemplateKind.WORKFLOW, id)
        return found if isinstance(found, workflow_pb2.WorkflowTemplate) else None

    def get_launch_plan(self, id: identifier_pb2.Identifier) -> workflow_pb2.LaunchPlan | None:
        """A launch plan, or None (recorded as missing when unknown)."""
        found = self._get(TemplateKind.LAUNCH_PLAN, id)
        return found if isinstance(found, workflow_pb2.LaunchPlan) else None


async def compile_resolving(
    source: TemplateSource,
    compile_fn: Callable[[KnownResolver], _T],
    overlay: dict[tuple[TemplateKind, str], Template] | None = None,
    *,
    on_thread: bool = False,
) -> _T:
    """Run `compile_fn` until every template it asks for was fetched; its last result (or
    exception) is the answer. With `on_thread`, each compile runs on a thread (a large spec:
    the event loop keeps serving meanwhile)."""
    known: dict[tuple[TemplateKind, str], Template | None] = {}
    for _ in range(_MAX_ROUNDS):
        resolver = KnownResolver(known, overlay)
        try:
            if on_thread:
                result = await asyncio.to_thread(compile_fn, resolver)
            else:
                result = compile_fn(resolver)
        except Exception:
            if not resolver.missing:
                raise
        else:
            if not resolver.missing:
                return result
        known.update(await source.fetch((k[0], id) for k, id in resolver.missing.items()))
    return compile_fn(KnownResolver(known, overlay))
