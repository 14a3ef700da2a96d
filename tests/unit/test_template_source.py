"""The template source's short memory of "not registered" (`get_recent`), which the check of
templates embedded in dynamic specs uses, over a real (in-memory) store."""

from __future__ import annotations

import asyncio
import time

import pytest
from plait_engine import ids, templates
from plait_engine.store import TemplateKind
from plait_engine.store.memory import MemoryStore
from plait_engine.templates import TemplateSource
from plaitidl.core.v1 import identifier_pb2, tasks_pb2


def _task(version: str) -> tasks_pb2.TaskTemplate:
    return tasks_pb2.TaskTemplate(
        id=identifier_pb2.Identifier(
            resource_type=identifier_pb2.RESOURCE_TYPE_TASK,
            project="p",
            domain="d",
            name="t",
            version=version,
        )
    )


async def _put(store: MemoryStore, task: tasks_pb2.TaskTemplate) -> str:
    """Register behind the source's back, as another replica would."""
    key = ids.id_key(task.id)
    body = task.SerializeToString()
    await store.put_templates([(TemplateKind.TASK, key, "digest-" + key, body)])
    return key


def test_not_registered_is_believed_for_a_moment_then_asked_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(templates, "ABSENT_TTL", 0.3)

    async def go() -> None:
        store = MemoryStore()
        source = TemplateSource(store)
        task = _task("v1")
        assert await source.get_recent(TemplateKind.TASK, task.id) is None
        await _put(store, task)
        # `get` always asks the store; `get_recent` trusts its recent "absent".
        assert await source.get(TemplateKind.TASK, task.id) == task
        assert await source.get_recent(TemplateKind.TASK, task.id) is None
        deadline = time.monotonic() + 5
        while await source.get_recent(TemplateKind.TASK, task.id) is None:
            assert time.monotonic() < deadline, "the absent answer never expired"
            await asyncio.sleep(0.05)
        assert await source.get_recent(TemplateKind.TASK, task.id) == task

    asyncio.run(go())


def test_a_registration_on_this_replica_is_seen_at_once() -> None:
    async def go() -> None:
        store = MemoryStore()
        source = TemplateSource(store)
        task = _task("v2")
        assert await source.get_recent(TemplateKind.TASK, task.id) is None
        key = await _put(store, task)
        source.registered(TemplateKind.TASK, key)
        assert await source.get_recent(TemplateKind.TASK, task.id) == task

    asyncio.run(go())
