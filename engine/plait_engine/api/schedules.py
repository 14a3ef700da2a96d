"""`ScheduleService` over the schedule use cases."""

from __future__ import annotations

from typing import Any

import grpc.aio
from plaitidl.service.v1 import schedule_service_pb2 as ss
from plaitidl.service.v1 import schedule_service_pb2_grpc as ss_grpc

from plait_engine.api.requests import require
from plait_engine.service.schedules import SchedulesService, ScheduleView

Context = grpc.aio.ServicerContext[Any, Any]


def schedule_proto(view: ScheduleView) -> ss.ScheduleState:
    """A schedule as the API shows it."""
    out = ss.ScheduleState(
        launch_plan_id=view.launch_plan.id,
        schedule=view.launch_plan.schedule,
        paused=view.state.paused,
    )
    if view.next_tick:
        out.next_tick.FromNanoseconds(int(view.next_tick * 1e9))
    if view.state.last_execution:
        out.last_tick.FromNanoseconds(int(view.state.last_tick * 1e9))
        project, domain, name = view.state.last_execution.split("/", 2)
        out.last_execution.project, out.last_execution.domain = project, domain
        out.last_execution.name = name
    return out


class ScheduleServicer(ss_grpc.ScheduleServiceServicer):
    """Shows, pauses and resumes schedules.

    Args:
        schedules: The schedule use cases.
    """

    def __init__(self, schedules: SchedulesService) -> None:
        self._s = schedules

    async def ListSchedules(  # noqa: N802
        self, request: ss.ListSchedulesRequest, context: Context
    ) -> ss.ListSchedulesResponse:
        """See `ScheduleService.ListSchedules`."""
        views = await self._s.list(request.project, request.domain)
        return ss.ListSchedulesResponse(schedules=[schedule_proto(v) for v in views])

    async def PauseSchedule(  # noqa: N802
        self, request: ss.PauseScheduleRequest, context: Context
    ) -> ss.PauseScheduleResponse:
        """See `ScheduleService.PauseSchedule`."""
        require(request.HasField("launch_plan_id"), "launch_plan_id", "a launch plan id")
        view = await self._s.set_paused(request.launch_plan_id, True)
        return ss.PauseScheduleResponse(schedule=schedule_proto(view))

    async def ResumeSchedule(  # noqa: N802
        self, request: ss.ResumeScheduleRequest, context: Context
    ) -> ss.ResumeScheduleResponse:
        """See `ScheduleService.ResumeSchedule`."""
        require(request.HasField("launch_plan_id"), "launch_plan_id", "a launch plan id")
        view = await self._s.set_paused(request.launch_plan_id, False)
        return ss.ResumeScheduleResponse(schedule=schedule_proto(view))
