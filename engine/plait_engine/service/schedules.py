"""Schedules: launch plans that start an execution on every tick of a cron expression or a
fixed rate.

Exactly once per tick, across restarts and replicas: the execution of a tick is created with a
request id derived from the launch plan and the tick, so starting it twice returns the first;
one replica at a time runs the ticks (it holds the store's ``schedules`` lease), and each tick
handled is recorded. Missed ticks (no engine ran, or the schedule was paused) follow the
schedule's catch-up policy. The newest version of a launch plan carries its name's schedule.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from plaitidl.core.v1 import identifier_pb2, literals_pb2, workflow_pb2

from plait_engine import ids
from plait_engine.errors import FieldViolation, InvalidArgument, NotFound
from plait_engine.service import cron
from plait_engine.service.executions import ExecutionsService
from plait_engine.store import ScheduleStateRecord, Store, TemplateKind

log = logging.getLogger("plait.schedules")
_S = workflow_pb2.Schedule
_MAX_CATCH_UP = 1000  # ticks run at once under CATCH_UP_ALL
_LOOK_EVERY = 5.0  # seconds between looks for new or changed schedules


@dataclass
class ScheduleView:
    """A schedule and where it stands (what `ScheduleService` shows)."""

    launch_plan: workflow_pb2.LaunchPlan
    state: ScheduleStateRecord
    next_tick: float
    stored: bool = True


def schedule_problems(schedule: workflow_pb2.Schedule, field: str) -> list[FieldViolation]:
    """Why a launch plan's schedule cannot run (checked at registration)."""
    which = schedule.WhichOneof("timing")
    if which == "cron":
        try:
            cron.parse(schedule.cron)
        except cron.CronError as exc:
            return [FieldViolation(f"{field}.cron", str(exc))]
    elif which == "fixed_rate":
        if schedule.fixed_rate.ToTimedelta().total_seconds() < 1:
            return [FieldViolation(f"{field}.fixed_rate", "a fixed rate is at least 1 second")]
    else:
        return [FieldViolation(field, "set cron or fixed_rate")]
    return []


def ticks_between(schedule: workflow_pb2.Schedule, after: float, until: float) -> list[float]:
    """The ticks in (after, until], oldest first (at most `_MAX_CATCH_UP` + 1)."""
    out: list[float] = []
    if schedule.WhichOneof("timing") == "fixed_rate":
        period = schedule.fixed_rate.ToTimedelta().total_seconds()
        origin = (
            schedule.start_time.ToNanoseconds() / 1e9 if schedule.HasField("start_time") else 0.0
        )
        k = int((after - origin) // period) + 1
        while (t := origin + k * period) <= until and len(out) <= _MAX_CATCH_UP:
            if t > after:
                out.append(t)
            k += 1
        return out
    expr = cron.parse(schedule.cron)
    at = datetime.fromtimestamp(after, UTC)
    while len(out) <= _MAX_CATCH_UP:
        at = expr.next_after(at)
        if at.timestamp() > until:
            break
        out.append(at.timestamp())
    return out


def next_tick(schedule: workflow_pb2.Schedule, after: float) -> float:
    """The first tick after `after`."""
    found = ticks_between(schedule, after, after + 366 * 86400 * 5)
    return found[0] if found else 0.0


def _execution_name(lp: workflow_pb2.LaunchPlan, tick: float) -> str:
    short = re.sub(r"[^A-Za-z0-9_-]", "-", lp.id.name.rsplit(".", 1)[-1])[:40] or "schedule"
    stamp = datetime.fromtimestamp(tick, UTC).strftime("%Y%m%dt%H%M%S")
    return f"{short}-{stamp}".lstrip("-_") or f"s-{stamp}"


class ScheduleRunner:
    """Starts the executions of due ticks, on the replica holding the ``schedules`` lease.

    Args:
        store: The store.
        executions: The execution use cases (ticks start executions there).
        owner: This replica's id.
    """

    def __init__(self, store: Store, executions: ExecutionsService, owner: str) -> None:
        self._store = store
        self._executions = executions
        self._owner = owner
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    def start(self) -> None:
        """Run in the background."""
        self._task = asyncio.get_running_loop().create_task(self._loop())

    def poke(self) -> None:
        """Look again now (a schedule was registered, paused or resumed)."""
        self._wake.set()

    async def stop(self) -> None:
        """Stop."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
            # Hand the duty over at once: another replica (or our successor) need not wait
            # for the lease to expire.
            try:
                await self._store.acquire_lease("schedules", self._owner, time.time(), 0.0)
            except Exception:
                log.warning("could not release the schedules lease", exc_info=True)

    async def _loop(self) -> None:
        while True:
            wait = _LOOK_EVERY
            try:
                now = time.time()
                if await self._store.acquire_lease(
                    "schedules", self._owner, now, now + 3 * _LOOK_EVERY
                ):
                    due = await self.run_due(now)
                    wait = min(_LOOK_EVERY, max(0.05, due - time.time())) if due else wait
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("running schedules failed; trying again")
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), wait)
            except TimeoutError:
                pass

    async def views(self, project: str = "", domain: str = "") -> list[ScheduleView]:
        """Every active schedule (of a project and domain when given), by launch plan name."""
        prefix = f"{project}/{domain}/" if project and domain else ""
        bodies = await self._store.list_templates(TemplateKind.LAUNCH_PLAN, prefix, 100_000, 0)
        states = await self._store.schedule_states()
        newest: dict[str, workflow_pb2.LaunchPlan] = {}
        for body in bodies:  # most recently registered first
            lp = workflow_pb2.LaunchPlan.FromString(body)
            newest.setdefault(ids.name_prefix(lp.id), lp)
        out: list[ScheduleView] = []
        now = time.time()
        for key, lp in sorted(newest.items()):
            if not lp.HasField("schedule"):
                continue
            state = states.get(key) or ScheduleStateRecord(key, last_tick=_origin(lp, now))
            after = max(state.last_tick, now)
            out.append(ScheduleView(lp, state, next_tick(lp.schedule, after), key in states))
        return out

    async def run_due(self, now: float) -> float:
        """Start the executions of every due tick; returns when the next tick is (0: none)."""
        soonest = 0.0
        for view in await self.views():
            state, lp = view.state, view.launch_plan
            if not view.stored:  # seen for the first time: ticks count from here
                await self._store.put_schedule_state(state)
            if not state.paused:
                await self._run_ticks(lp, state, now)
                view.next_tick = next_tick(lp.schedule, max(state.last_tick, now))
            if view.next_tick and (not soonest or view.next_tick < soonest):
                soonest = view.next_tick
        return soonest

    async def _run_ticks(
        self, lp: workflow_pb2.LaunchPlan, state: ScheduleStateRecord, now: float
    ) -> None:
        due = ticks_between(lp.schedule, state.last_tick, now)
        if not due:
            return
        policy = lp.schedule.catch_up
        if policy == _S.CATCH_UP_NONE:
            run = [t for t in due if now - t < 1.0]  # only a tick that is happening now
        elif policy == _S.CATCH_UP_ALL:
            run = due[:_MAX_CATCH_UP]
        else:
            run = due[-1:]
        for tick in run:
            state.last_execution = await self._start(lp, tick)
        state.last_tick = due[-1]
        await self._store.put_schedule_state(state)

    async def _start(self, lp: workflow_pb2.LaunchPlan, tick: float) -> str:
        inputs = literals_pb2.LiteralMap()
        if lp.schedule.kickoff_time_input:
            lit = inputs.literals[lp.schedule.kickoff_time_input]
            lit.scalar.primitive.datetime.FromNanoseconds(int(tick * 1e9))
        rec = await self._executions.create(
            launch_plan_id=lp.id,
            inputs=inputs,
            request_id=f"schedule:{ids.name_prefix(lp.id)}{tick:.0f}",
            name=_execution_name(lp, tick),
            labels={"plait.schedule": lp.id.name},
        )
        log.info("schedule %s started %s for the tick at %s", lp.id.name, rec.key, tick)
        return rec.key


def _origin(lp: workflow_pb2.LaunchPlan, now: float) -> float:
    """Where a schedule seen for the first time starts counting ticks."""
    if lp.schedule.HasField("start_time"):
        return lp.schedule.start_time.ToNanoseconds() / 1e9
    return now


class SchedulesService:
    """The `ScheduleService` use cases.

    Args:
        store: The store.
        runner: The runner (poked when a schedule changes).
    """

    def __init__(self, store: Store, runner: ScheduleRunner) -> None:
        self._store = store
        self._runner = runner

    async def list(self, project: str, domain: str) -> list[ScheduleView]:
        """Schedules of a project and domain."""
        return await self._runner.views(
            project or ids.DEFAULT_PROJECT, domain or ids.DEFAULT_DOMAIN
        )

    async def set_paused(self, lp_id: identifier_pb2.Identifier, paused: bool) -> ScheduleView:
        """Pause or resume a launch plan's schedule.

        Raises:
            InvalidArgument: No name.
            NotFound: The launch plan has no schedule.
        """
        if not lp_id.name:
            raise InvalidArgument(
                "launch_plan_id.name is required",
                [FieldViolation("launch_plan_id.name", "a launch plan name is required")],
            )
        key = ids.name_prefix(lp_id)
        project, domain = key.split("/")[:2]
        found = [v for v in await self._runner.views(project, domain) if v.state.key == key]
        if not found:
            raise NotFound(f"launch plan {key.rstrip('/')} has no schedule")
        view = found[0]
        view.state.paused = paused
        if not paused:
            # Resumed: missed ticks are caught up by the schedule's policy from here.
            self._runner.poke()
        await self._store.put_schedule_state(view.state)
        return view
