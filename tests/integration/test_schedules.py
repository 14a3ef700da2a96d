"""Schedules: ticks start executions exactly once, across restarts; pause and resume; cron."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from plait import _serialize
from plait_engine.app import Engine
from plait_engine.errors import InvalidArgument
from plait_engine.service import cron
from plait_engine.service.schedules import ticks_between
from plait_engine.store import ExecutionFilter
from plaitidl.core.v1 import workflow_pb2

from tests.support.engines import embedded_engine
from tests.workflows import scheduled


def _serve(tmp_path: Path, body: Callable[[Engine], Awaitable[None]]) -> None:
    """An engine that runs schedules as a server would (tasks in-process)."""

    async def main() -> None:
        engine = embedded_engine(tmp_path / "data")
        engine.scheduler.config.adopt = True
        await engine.start()
        try:
            await body(engine)
        finally:
            await engine.stop()

    asyncio.run(main())


async def _register(engine: Engine) -> workflow_pb2.LaunchPlan:
    bundle = _serialize.collect(scheduled.every_second)
    await engine.registry.register(bundle.tasks, bundle.workflows, bundle.launch_plans)
    engine.schedule_runner.poke()
    return bundle.launch_plans[0]


async def _scheduled(engine: Engine) -> list[str]:
    rows = await engine.store.list_executions(
        ExecutionFilter(labels=(("plait.schedule", "scheduled.every_second"),)), 1000
    )
    return sorted(r.name for r in rows)


def test_ticks_start_executions_once_each_across_restarts(tmp_path: Path) -> None:
    names: list[str] = []

    async def first(engine: Engine) -> None:
        await _register(engine)
        await asyncio.sleep(3.5)
        names.extend(await _scheduled(engine))
        assert len(names) >= 2
        for rec in await engine.store.list_executions(ExecutionFilter(), 1000):
            final = await engine.executions.wait(rec, timeout=30)
            _, out = await engine.executions.data(final)
            # The tick's time reached the workflow's kickoff input.
            assert out.literals["o0"].scalar.primitive.string_value.startswith("20")

    _serve(tmp_path, first)

    async def second(engine: Engine) -> None:
        await asyncio.sleep(2.5)
        after = await _scheduled(engine)
        assert set(names) < set(after)  # the old ones kept, new ticks added
        assert len(after) == len(set(after))  # never one tick twice
        # Ticks missed while no engine ran were caught up (policy "all"): no gap.
        stamps = sorted(datetime.strptime(n[-15:], "%Y%m%dt%H%M%S") for n in after)
        gaps = {(b - a).total_seconds() for a, b in itertools.pairwise(stamps)}
        assert gaps == {1.0}, gaps

    _serve(tmp_path, second)


def test_pause_and_resume(tmp_path: Path) -> None:
    async def body(engine: Engine) -> None:
        lp = await _register(engine)
        await asyncio.sleep(1.5)
        paused = await engine.schedules.set_paused(lp.id, True)
        assert paused.state.paused
        before = await _scheduled(engine)
        await asyncio.sleep(2.2)
        assert await _scheduled(engine) == before  # nothing while paused
        listed = await engine.schedules.list("", "")
        assert [v.launch_plan.id.name for v in listed] == ["scheduled.every_second"]
        await engine.schedules.set_paused(lp.id, False)
        await asyncio.sleep(1.5)
        assert len(await _scheduled(engine)) > len(before)

    _serve(tmp_path, body)


def test_malformed_schedules_are_refused_at_registration(tmp_path: Path) -> None:
    async def body(engine: Engine) -> None:
        bundle = _serialize.collect(scheduled.every_second)
        bad = workflow_pb2.LaunchPlan()
        bad.CopyFrom(bundle.launch_plans[0])
        bad.schedule.cron = "61 * * * *"
        bad.id.version = "bad"
        with pytest.raises(InvalidArgument) as info:
            await engine.registry.register(bundle.tasks, bundle.workflows, [bad])
        assert info.value.violations[0].field == "launch_plans[0].schedule.cron"
        assert "minute" in info.value.violations[0].description
        bad.schedule.fixed_rate.FromSeconds(60)
        bad.schedule.kickoff_time_input = "nope"
        with pytest.raises(InvalidArgument, match="no datetime input 'nope'"):
            await engine.registry.register(bundle.tasks, bundle.workflows, [bad])

    _serve(tmp_path, body)


def test_cron_expressions() -> None:
    t = datetime(2026, 11, 27, 16, 50, tzinfo=UTC)  # a Friday
    workday = cron.parse("*/15 9-17 * * mon-fri")
    ticks = []
    for _ in range(5):
        t = workday.next_after(t)
        ticks.append(t.strftime("%a %H:%M"))
    assert ticks == ["Fri 17:00", "Fri 17:15", "Fri 17:30", "Fri 17:45", "Mon 09:00"]
    leap = cron.parse("0 0 29 2 *").next_after(datetime(2026, 3, 1, tzinfo=UTC))
    assert leap == datetime(2028, 2, 29, tzinfo=UTC)
    assert cron.parse("@daily") == cron.parse("0 0 * * *")
    for bad in ("* * * *", "60 * * * *", "* * * * 8", "*/0 * * * *", "5-1 * * * *", "x * * * *"):
        with pytest.raises(cron.CronError):
            cron.parse(bad)


def test_catch_up_counts_every_missed_tick() -> None:
    s = workflow_pb2.Schedule(cron="0 * * * *")
    start = datetime(2026, 1, 1, 0, 30, tzinfo=UTC).timestamp()
    end = datetime(2026, 1, 1, 5, 0, tzinfo=UTC).timestamp()
    hours = [datetime.fromtimestamp(t, UTC).hour for t in ticks_between(s, start, end)]
    assert hours == [1, 2, 3, 4, 5]
