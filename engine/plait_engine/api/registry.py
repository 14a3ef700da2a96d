"""`RegistryService` over the registry use cases."""

from __future__ import annotations

from typing import Any

import grpc.aio
from plaitidl.core.v1 import tasks_pb2, workflow_pb2
from plaitidl.service.v1 import registry_service_pb2 as rs
from plaitidl.service.v1 import registry_service_pb2_grpc as rs_grpc

from plait_engine.api.requests import decode_int_token, encode_token, page_size, require_id
from plait_engine.service import RegistryService
from plait_engine.store import TemplateKind
from plait_engine.templates import Template

Context = grpc.aio.ServicerContext[Any, Any]


class RegistryServicer(rs_grpc.RegistryServiceServicer):
    """Registers and serves immutable templates.

    Args:
        registry: The registry use cases.
    """

    def __init__(self, registry: RegistryService) -> None:
        self._registry = registry

    async def Register(self, request: rs.RegisterRequest, context: Context) -> rs.RegisterResponse:  # noqa: N802
        """See `RegistryService.Register`."""
        result = await self._registry.register(
            request.tasks, request.workflows, request.launch_plans
        )
        return rs.RegisterResponse(created=result.created, unchanged=result.unchanged)

    async def ValidateTemplates(  # noqa: N802
        self, request: rs.ValidateTemplatesRequest, context: Context
    ) -> rs.ValidateTemplatesResponse:
        """See `RegistryService.ValidateTemplates`."""
        found = await self._registry.validate(
            request.tasks, request.workflows, request.launch_plans
        )
        return rs.ValidateTemplatesResponse(
            violations=[rs.FieldViolation(field=v.field, description=v.description) for v in found]
        )

    async def _list(self, kind: TemplateKind, request: Any) -> tuple[list[Template], str]:
        limit = page_size(request.page_size)
        offset = decode_int_token(f"t{int(kind)}", request.page_token)
        rows = await self._registry.list_templates(
            kind, request.project, request.domain, request.name, limit + 1, offset
        )
        token = encode_token(f"t{int(kind)}", str(offset + limit)) if len(rows) > limit else ""
        return rows[:limit], token

    async def GetTask(self, request: rs.GetTaskRequest, context: Context) -> rs.GetTaskResponse:  # noqa: N802
        """See `RegistryService.GetTask`."""
        found = await self._registry.get(TemplateKind.TASK, require_id(request))
        assert isinstance(found, tasks_pb2.TaskTemplate)
        return rs.GetTaskResponse(task=found)

    async def ListTasks(  # noqa: N802
        self, request: rs.ListTasksRequest, context: Context
    ) -> rs.ListTasksResponse:
        """See `RegistryService.ListTasks`."""
        rows, token = await self._list(TemplateKind.TASK, request)
        return rs.ListTasksResponse(tasks=rows, next_page_token=token)  # type: ignore[arg-type]

    async def GetWorkflow(  # noqa: N802
        self, request: rs.GetWorkflowRequest, context: Context
    ) -> rs.GetWorkflowResponse:
        """See `RegistryService.GetWorkflow`."""
        found = await self._registry.get(TemplateKind.WORKFLOW, require_id(request))
        assert isinstance(found, workflow_pb2.WorkflowTemplate)
        return rs.GetWorkflowResponse(workflow=found)

    async def ListWorkflows(  # noqa: N802
        self, request: rs.ListWorkflowsRequest, context: Context
    ) -> rs.ListWorkflowsResponse:
        """See `RegistryService.ListWorkflows`."""
        rows, token = await self._list(TemplateKind.WORKFLOW, request)
        return rs.ListWorkflowsResponse(workflows=rows, next_page_token=token)  # type: ignore[arg-type]

    async def GetLaunchPlan(  # noqa: N802
        self, request: rs.GetLaunchPlanRequest, context: Context
    ) -> rs.GetLaunchPlanResponse:
        """See `RegistryService.GetLaunchPlan`."""
        found = await self._registry.get(TemplateKind.LAUNCH_PLAN, require_id(request))
        assert isinstance(found, workflow_pb2.LaunchPlan)
        return rs.GetLaunchPlanResponse(launch_plan=found)

    async def ListLaunchPlans(  # noqa: N802
        self, request: rs.ListLaunchPlansRequest, context: Context
    ) -> rs.ListLaunchPlansResponse:
        """See `RegistryService.ListLaunchPlans`."""
        rows, token = await self._list(TemplateKind.LAUNCH_PLAN, request)
        return rs.ListLaunchPlansResponse(launch_plans=rows, next_page_token=token)  # type: ignore[arg-type]
