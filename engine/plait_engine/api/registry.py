"""`RegistryService` over `Engine`, and the request helpers every servicer shares."""

from __future__ import annotations

import base64
import binascii
from typing import Any

import grpc.aio
from plaitidl.core.v1 import identifier_pb2, tasks_pb2, workflow_pb2
from plaitidl.service.v1 import registry_service_pb2 as rs
from plaitidl.service.v1 import registry_service_pb2_grpc as rs_grpc

from plait_engine.core import DEFAULT_DOMAIN, DEFAULT_PROJECT, Engine
from plait_engine.errors import FieldViolation, InvalidArgument
from plait_engine.store import TemplateKind

Context = grpc.aio.ServicerContext[Any, Any]

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
_TOKEN_PREFIX = "o:"


def page(page_size: int, page_token: str) -> tuple[int, int]:
    """The (limit, offset) a list request asks for.

    Args:
        page_size: Requested size; 0 means the default (100); capped at 1000.
        page_token: An opaque token from a previous response; empty for the first page.

    Returns:
        ``(limit, offset)``.

    Raises:
        InvalidArgument: A negative size or a token this server did not issue.
    """
    if page_size < 0:
        raise InvalidArgument(
            "page_size must not be negative", [FieldViolation("page_size", "must be >= 0")]
        )
    limit = min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
    if not page_token:
        return limit, 0
    try:
        text = base64.urlsafe_b64decode(page_token.encode()).decode()
        if not text.startswith(_TOKEN_PREFIX):
            raise ValueError(text)
        offset = int(text.removeprefix(_TOKEN_PREFIX))
        if offset < 0:
            raise ValueError(text)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidArgument(
            "page_token is not a token this server issued",
            [FieldViolation("page_token", "pass a next_page_token from a previous response")],
        ) from None
    return limit, offset


def next_token(offset: int, limit: int, got: int) -> str:
    """The next page's token, given that `got` rows came back for a query of `limit` + 1."""
    if got <= limit:
        return ""
    return base64.urlsafe_b64encode(f"{_TOKEN_PREFIX}{offset + limit}".encode()).decode()


def require(value: object, field: str, what: str) -> None:
    """Raise `InvalidArgument` naming `field` when `value` is empty."""
    if not value:
        raise InvalidArgument(
            f"{field} is required", [FieldViolation(field, f"{what} is required")]
        )


def require_id(request: Any, field: str = "id") -> identifier_pb2.Identifier:
    """The template identifier of a Get request; its name is required."""
    require(request.HasField(field), field, "an identifier")
    ident: identifier_pb2.Identifier = getattr(request, field)
    require(ident.name, f"{field}.name", "a name")
    return ident


def prefix(project: str, domain: str, name: str = "") -> str:
    """The store key prefix selecting templates of a project, domain and optional name."""
    base = f"{project or DEFAULT_PROJECT}/{domain or DEFAULT_DOMAIN}/"
    return f"{base}{name}/" if name else base


class RegistryServicer(rs_grpc.RegistryServiceServicer):
    """Registers and serves immutable templates.

    Args:
        engine: The engine that compiles and stores them.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    async def Register(self, request: rs.RegisterRequest, context: Context) -> rs.RegisterResponse:  # noqa: N802
        """See `RegistryService.Register`."""
        if not (request.tasks or request.workflows or request.launch_plans):
            raise InvalidArgument(
                "nothing to register",
                [FieldViolation("tasks", "give at least one task, workflow or launch plan")],
            )
        result = self._engine.register(request.tasks, request.workflows, request.launch_plans)
        return rs.RegisterResponse(created=result.created, unchanged=result.unchanged)

    def _list(self, kind: TemplateKind, request: Any) -> tuple[list[bytes], str]:
        limit, offset = page(request.page_size, request.page_token)
        rows = self._engine.store.list_templates(
            kind, prefix(request.project, request.domain, request.name), limit + 1, offset
        )
        return rows[:limit], next_token(offset, limit, len(rows))

    async def GetTask(self, request: rs.GetTaskRequest, context: Context) -> rs.GetTaskResponse:  # noqa: N802
        """See `RegistryService.GetTask`."""
        found = self._engine.get_template(TemplateKind.TASK, require_id(request))
        assert isinstance(found, tasks_pb2.TaskTemplate)
        return rs.GetTaskResponse(task=found)

    async def ListTasks(  # noqa: N802
        self, request: rs.ListTasksRequest, context: Context
    ) -> rs.ListTasksResponse:
        """See `RegistryService.ListTasks`."""
        rows, token = self._list(TemplateKind.TASK, request)
        return rs.ListTasksResponse(
            tasks=[tasks_pb2.TaskTemplate.FromString(b) for b in rows], next_page_token=token
        )

    async def GetWorkflow(  # noqa: N802
        self, request: rs.GetWorkflowRequest, context: Context
    ) -> rs.GetWorkflowResponse:
        """See `RegistryService.GetWorkflow`."""
        found = self._engine.get_template(TemplateKind.WORKFLOW, require_id(request))
        assert isinstance(found, workflow_pb2.WorkflowTemplate)
        return rs.GetWorkflowResponse(workflow=found)

    async def ListWorkflows(  # noqa: N802
        self, request: rs.ListWorkflowsRequest, context: Context
    ) -> rs.ListWorkflowsResponse:
        """See `RegistryService.ListWorkflows`."""
        rows, token = self._list(TemplateKind.WORKFLOW, request)
        return rs.ListWorkflowsResponse(
            workflows=[workflow_pb2.WorkflowTemplate.FromString(b) for b in rows],
            next_page_token=token,
        )

    async def GetLaunchPlan(  # noqa: N802
        self, request: rs.GetLaunchPlanRequest, context: Context
    ) -> rs.GetLaunchPlanResponse:
        """See `RegistryService.GetLaunchPlan`."""
        found = self._engine.get_template(TemplateKind.LAUNCH_PLAN, require_id(request))
        assert isinstance(found, workflow_pb2.LaunchPlan)
        return rs.GetLaunchPlanResponse(launch_plan=found)

    async def ListLaunchPlans(  # noqa: N802
        self, request: rs.ListLaunchPlansRequest, context: Context
    ) -> rs.ListLaunchPlansResponse:
        """See `RegistryService.ListLaunchPlans`."""
        rows, token = self._list(TemplateKind.LAUNCH_PLAN, request)
        return rs.ListLaunchPlansResponse(
            launch_plans=[workflow_pb2.LaunchPlan.FromString(b) for b in rows],
            next_page_token=token,
        )
