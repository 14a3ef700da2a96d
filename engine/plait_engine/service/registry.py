"""Registering and reading templates."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from plaitidl.core.v1 import identifier_pb2, tasks_pb2, types_pb2, workflow_pb2

from plait_engine import compiler, ids
from plait_engine.errors import (
    AlreadyExists,
    FieldViolation,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from plait_engine.store import Conflict, Store, TemplateKind
from plait_engine.templates import KnownResolver, Template, TemplateSource, compile_resolving

log = logging.getLogger("plait.registry")
_KIND_NAMES = {
    TemplateKind.TASK: "task",
    TemplateKind.WORKFLOW: "workflow",
    TemplateKind.LAUNCH_PLAN: "launch plan",
}
_FIELDS = {
    TemplateKind.TASK: "tasks",
    TemplateKind.WORKFLOW: "workflows",
    TemplateKind.LAUNCH_PLAN: "launch_plans",
}
_PARSE: dict[TemplateKind, Callable[[bytes], Template]] = {
    TemplateKind.TASK: tasks_pb2.TaskTemplate.FromString,
    TemplateKind.WORKFLOW: workflow_pb2.WorkflowTemplate.FromString,
    TemplateKind.LAUNCH_PLAN: workflow_pb2.LaunchPlan.FromString,
}


# Why a process target's program (its command[0]) may not run, or None when it may.
ProcessCheck = Callable[[str], str | None]
# Problems a task's type plugin finds in it: (field path relative to the task, message).
TaskCheck = Callable[[tasks_pb2.TaskTemplate], list[tuple[str, str]]]


@dataclass
class RegisterResult:
    """What `RegistryService.register` stored."""

    created: list[identifier_pb2.Identifier]
    unchanged: list[identifier_pb2.Identifier]


def normalize_id(id: identifier_pb2.Identifier, kind: TemplateKind) -> None:
    """Fill the defaults of an identifier in place."""
    id.resource_type = int(kind)  # type: ignore[assignment]
    id.project = id.project or ids.DEFAULT_PROJECT
    id.domain = id.domain or ids.DEFAULT_DOMAIN


def prefix(project: str, domain: str, name: str = "") -> str:
    """The key prefix selecting templates of a project, domain and optional name."""
    base = f"{project or ids.DEFAULT_PROJECT}/{domain or ids.DEFAULT_DOMAIN}/"
    return f"{base}{name}/" if name else base


class RegistryService:
    """Compiles and stores immutable templates; serves them back.

    Args:
        store: The store.
        source: Registered templates (shared with the scheduler).
        limits: What the compiler accepts.
        process_check: The engine's process policy; tasks whose process target it refuses
            are not registered (default: every command is allowed).
        on_schedules: Called after launch plans with a schedule were registered.
        task_check: What the plugin of a task's type finds wrong with its configuration
            (``custom``); tasks of types without a plugin here are not checked.
    """

    def __init__(
        self,
        store: Store,
        source: TemplateSource,
        limits: compiler.Limits,
        process_check: ProcessCheck | None = None,
        on_schedules: Callable[[], None] | None = None,
        task_check: TaskCheck | None = None,
    ) -> None:
        self._store = store
        self.source = source
        self._limits = limits
        self._process_check = process_check
        self._task_check = task_check
        # Told when a launch plan with a schedule was registered (the schedule runner looks).
        self._on_schedules = on_schedules

    async def register(
        self,
        tasks: Sequence[tasks_pb2.TaskTemplate] = (),
        workflows: Sequence[workflow_pb2.WorkflowTemplate] = (),
        launch_plans: Sequence[workflow_pb2.LaunchPlan] = (),
    ) -> RegisterResult:
        """Check and store templates atomically (see `RegistryService.Register`).

        Raises:
            InvalidArgument: With a violation per problem, named by its field path.
            PermissionDenied: A process target runs a command the engine does not allow.
            AlreadyExists: A version holds different content.
        """
        if not (tasks or workflows or launch_plans):
            raise InvalidArgument(
                "nothing to register",
                [FieldViolation("tasks", "give at least one task, workflow or launch plan")],
            )
        refused = self._refused_commands(tasks)
        if refused:
            first = refused[0]
            raise PermissionDenied(f"{first.field}: {first.description}", refused)
        new = _normalized(tasks, workflows, launch_plans)
        await self._compile(new)
        items = []
        for kind, m in new:
            body = m.SerializeToString(deterministic=True)
            key = ids.id_key(m.id)
            items.append((kind, key, hashlib.sha256(body).hexdigest(), body))
        try:
            created = await self._store.put_templates(items)
        except Conflict as exc:
            raise AlreadyExists(
                f"{exc}: registered versions are immutable; register a new version"
            ) from None
        for kind, key, _, _ in items:
            self.source.registered(kind, key)
        pairs = list(zip((m.id for _, m in new), created, strict=True))
        if self._on_schedules is not None and any(lp.HasField("schedule") for lp in launch_plans):
            self._on_schedules()
        log.info(
            "registered %d template(s), %d new: %s", len(pairs), sum(created),
            ", ".join(f"{ids.id_key(i)}" for i, c in pairs if c)[:2000] or "-",
        )  # fmt: skip
        return RegisterResult(
            created=[i for i, c in pairs if c], unchanged=[i for i, c in pairs if not c]
        )

    async def validate(
        self,
        tasks: Sequence[tasks_pb2.TaskTemplate] = (),
        workflows: Sequence[workflow_pb2.WorkflowTemplate] = (),
        launch_plans: Sequence[workflow_pb2.LaunchPlan] = (),
    ) -> list[FieldViolation]:
        """Every problem `register` would refuse the templates for; nothing is stored."""
        refused = self._refused_commands(tasks)
        try:
            await self._compile(_normalized(tasks, workflows, launch_plans))
        except InvalidArgument as exc:
            return refused + (list(exc.violations) or [FieldViolation("", exc.message)])
        return refused

    def _refused_commands(self, tasks: Sequence[tasks_pb2.TaskTemplate]) -> list[FieldViolation]:
        if self._process_check is None:
            return []
        out: list[FieldViolation] = []
        for i, t in enumerate(tasks):
            if t.HasField("process") and t.process.command:
                reason = self._process_check(t.process.command[0])
                if reason is not None:
                    out.append(FieldViolation(f"tasks[{i}].process.command", reason))
        return out

    async def _compile(self, new: list[tuple[TemplateKind, Template]]) -> None:
        overlay: dict[tuple[TemplateKind, str], Template] = {}
        for kind, m in new:
            overlay[(kind, ids.id_key(m.id))] = m
            # A reference without a version within the request means this one.
            overlay.setdefault((kind, ids.name_prefix(m.id)), m)
        await compile_resolving(self.source, lambda r: self._check(new, r), overlay)

    def _check(self, new: list[tuple[TemplateKind, Template]], resolver: KnownResolver) -> None:
        violations: list[FieldViolation] = []
        counters = dict.fromkeys(_FIELDS, 0)
        for kind, m in new:
            field = f"{_FIELDS[kind]}[{counters[kind]}]"
            counters[kind] += 1
            if isinstance(m, tasks_pb2.TaskTemplate) and self._task_check is not None:
                violations += [
                    FieldViolation(f"{field}.{path}", message)
                    for path, message in self._task_check(m)
                ]
            try:
                if isinstance(m, tasks_pb2.TaskTemplate):
                    compiler.validate_task(m)
                elif isinstance(m, workflow_pb2.WorkflowTemplate):
                    compiler.compile_workflow(m, resolver, self._limits)
                else:
                    compiler.validate_launch_plan(m, resolver)
                    if m.HasField("schedule"):
                        _raise_schedule_problems(m, resolver)
            except InvalidArgument as exc:
                violations += [
                    FieldViolation(f"{field}.{v.field}", v.description) for v in exc.violations
                ] or [FieldViolation(field, exc.message)]
        if violations:
            first = violations[0]
            raise InvalidArgument(
                f"registration refused: {first.field}: {first.description}", violations
            )

    async def get(self, kind: TemplateKind, id: identifier_pb2.Identifier) -> Template:
        """One registered template (no version: the newest).

        Raises:
            NotFound: Nothing is registered under the identifier.
        """
        found = await self.source.get(kind, id)
        if found is None:
            raise NotFound(f"{_KIND_NAMES[kind]} {ids.id_key(id)} is not registered")
        return found

    async def list_templates(
        self, kind: TemplateKind, project: str, domain: str, name: str, limit: int, offset: int
    ) -> list[Template]:
        """Templates of a project and domain (and name), most recent first."""
        rows = await self._store.list_templates(kind, prefix(project, domain, name), limit, offset)
        parse = _PARSE[kind]
        return [parse(b) for b in rows]


def _raise_schedule_problems(lp: workflow_pb2.LaunchPlan, resolver: KnownResolver) -> None:
    from plait_engine.service.schedules import schedule_problems

    problems = schedule_problems(lp.schedule, "schedule")
    kickoff = lp.schedule.kickoff_time_input
    wf = resolver.get_workflow(lp.workflow_id)
    if kickoff and wf is not None:
        types = {v.name: v.type for v in wf.interface.inputs.variables}
        if types.get(kickoff) != types_pb2.LiteralType(simple=types_pb2.SIMPLE_TYPE_DATETIME):
            problems.append(
                FieldViolation(
                    "schedule.kickoff_time_input",
                    f"the workflow has no datetime input {kickoff!r}",
                )
            )
    if problems:
        raise InvalidArgument(problems[0].description, problems)


def _normalized(
    tasks: Sequence[tasks_pb2.TaskTemplate],
    workflows: Sequence[workflow_pb2.WorkflowTemplate],
    launch_plans: Sequence[workflow_pb2.LaunchPlan],
) -> list[tuple[TemplateKind, Template]]:
    out: list[tuple[TemplateKind, Template]] = []
    for t in tasks:
        c = tasks_pb2.TaskTemplate()
        c.CopyFrom(t)
        normalize_id(c.id, TemplateKind.TASK)
        out.append((TemplateKind.TASK, c))
    for w in workflows:
        cw = workflow_pb2.WorkflowTemplate()
        cw.CopyFrom(w)
        normalize_id(cw.id, TemplateKind.WORKFLOW)
        out.append((TemplateKind.WORKFLOW, cw))
    for lp in launch_plans:
        cl = workflow_pb2.LaunchPlan()
        cl.CopyFrom(lp)
        normalize_id(cl.id, TemplateKind.LAUNCH_PLAN)
        cl.workflow_id.project = cl.workflow_id.project or ids.DEFAULT_PROJECT
        cl.workflow_id.domain = cl.workflow_id.domain or ids.DEFAULT_DOMAIN
        out.append((TemplateKind.LAUNCH_PLAN, cl))
    return out
