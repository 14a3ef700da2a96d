"""The contract: every message of plaitidl.core.v1 and plaitidl.service.v1 round-trips.

One hand-built instance tree exercises every message type, including a DynamicJobSpec whose
generator task yields a nested dynamic, a branch with if/elif/else over AND/OR comparisons, an
array node, a subworkflow node and a launch-plan node. Each instance goes through binary and
JSON and must come back equal. A descriptor-pool check fails the test as soon as someone adds
a message that no instance here contains.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import importlib
import pkgutil
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import plaitidl.core.v1
import plaitidl.service.v1
import pytest
from google.protobuf import descriptor, json_format, struct_pb2
from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from plait._files import Directory, File
from plait._types import literal_type, to_literal
from plaitidl.core.v1 import (
    condition_pb2,
    dynamic_job_pb2,
    errors_pb2,
    events_pb2,
    execution_pb2,
    identifier_pb2,
    interface_pb2,
    literals_pb2,
    tasks_pb2,
    types_pb2,
    workflow_pb2,
)
from plaitidl.service.v1 import (
    data_service_pb2,
    execution_service_pb2,
    registry_service_pb2,
    schedule_service_pb2,
    worker_service_pb2,
)

C = condition_pb2
L = literals_pb2
T = types_pb2
W = workflow_pb2
ES = execution_service_pb2
RS = registry_service_pb2
WS = worker_service_pb2
DS = data_service_pb2
SS = schedule_service_pb2

START = "start-node"


class Mode(enum.Enum):
    FAST = "fast"
    SLOW = "slow"


@dataclasses.dataclass
class Point:
    x: int
    y: float


@dataclasses.dataclass
class Rich:
    """A value whose literal uses every literal and type message the type engine emits."""

    n: int
    f: float
    s: str
    b: bool
    raw: bytes
    when: dt.datetime
    span: dt.timedelta
    nothing: None
    maybe: int | None
    either: int | str
    xs: list[int]
    m: dict[str, Point]
    doc: dict[str, Any]
    mode: Mode
    data: File
    folder: Directory


RICH = Rich(
    n=-7,
    f=2.5,
    s="héllo",
    b=True,
    raw=b"\x00\xff",
    when=dt.datetime(2024, 5, 17, 12, 30, 1, 250, tzinfo=dt.UTC),
    span=dt.timedelta(minutes=-90, microseconds=5),
    nothing=None,
    maybe=None,
    either="x",
    xs=[1, 2, 3],
    m={"p": Point(1, 2.0), "q": Point(-3, 0.5)},
    doc={"k": [1, "a", None, {"z": False}], "f": 1.5},
    mode=Mode.SLOW,
    data=File("s3://bucket/data.csv"),
    folder=Directory("s3://bucket/folder/"),
)


def ident(
    name: str, rt: identifier_pb2.ResourceType.ValueType = identifier_pb2.RESOURCE_TYPE_TASK
) -> identifier_pb2.Identifier:
    return identifier_pb2.Identifier(
        resource_type=rt, project="p", domain="development", name=name, version="v1"
    )


def var(name: str, hint: object) -> interface_pb2.Variable:
    return interface_pb2.Variable(
        name=name, type=literal_type(hint, where=f"test var {name!r}"), description=f"the {name}"
    )


def iface(inputs: dict[str, object], outputs: dict[str, object]) -> interface_pb2.TypedInterface:
    return interface_pb2.TypedInterface(
        inputs=interface_pb2.VariableMap(variables=[var(k, h) for k, h in inputs.items()]),
        outputs=interface_pb2.VariableMap(variables=[var(k, h) for k, h in outputs.items()]),
    )


def promise(node: str, name: str, *path: str | int) -> L.BindingData:
    attrs = [
        L.PromiseAttribute(index=p) if isinstance(p, int) else L.PromiseAttribute(name=p)
        for p in path
    ]
    return L.BindingData(promise=L.OutputReference(node_id=node, var=name, attr_path=attrs))


def const(value: object, hint: object) -> L.BindingData:
    return L.BindingData(literal=to_literal(value, hint, var="const"))


def task(
    name: str, ttype: str, inputs: dict[str, object], outputs: dict[str, object]
) -> tasks_pb2.TaskTemplate:
    return tasks_pb2.TaskTemplate(
        id=ident(name),
        type=ttype,
        metadata=tasks_pb2.TaskMetadata(
            retries=tasks_pb2.RetryStrategy(retries=3, system_retries=0),
            timeout=Duration(seconds=60),
            cache=True,
            cache_version="1",
            cache_serialize=True,
            cache_ignore_inputs=["seed"],
            interruptible=True,
            runtime=tasks_pb2.RuntimeMetadata(
                type=tasks_pb2.RuntimeMetadata.RUNTIME_TYPE_SDK, language="python", version="0.1"
            ),
            description=f"task {name}",
        ),
        interface=iface(inputs, outputs),
        worker=tasks_pb2.WorkerTarget(queue="default", handler=f"examples.{name}"),
        custom=struct_pb2.Struct(fields={"k": struct_pb2.Value(string_value="v")}),
    )


def process_task() -> tasks_pb2.TaskTemplate:
    t = task("shell", "process", {"n": int}, {"out": File})
    t.process.CopyFrom(
        tasks_pb2.ProcessTarget(
            command=["sh", "-c"],
            args=["wc -l {{.inputs.n}} > {{.outputPrefix}}/out"],
            env={"A": "1", "B": "2"},
            image="alpine:3",
        )
    )
    return t


def comparison(
    op: C.ComparisonExpression.Operator.ValueType, left: str, right: object
) -> C.BooleanExpression:
    return C.BooleanExpression(
        comparison=C.ComparisonExpression(
            operator=op,
            left_value=C.Operand(var=left),
            right_value=C.Operand(literal=to_literal(right, type(right), var="rhs")),
        )
    )


def conjunction(
    op: C.ConjunctionExpression.LogicalOperator.ValueType,
    a: C.BooleanExpression,
    b: C.BooleanExpression,
) -> C.BooleanExpression:
    return C.BooleanExpression(
        conjunction=C.ConjunctionExpression(operator=op, left_expression=a, right_expression=b)
    )


def task_node(node_id: str, task_name: str, **inputs: L.BindingData) -> W.Node:
    return W.Node(
        id=node_id,
        metadata=W.NodeMetadata(
            name=node_id,
            timeout=Duration(seconds=30, nanos=5),
            retries=tasks_pb2.RetryStrategy(retries=1),
            cache=False,
            cache_version="2",
            interruptible=False,
        ),
        inputs=[L.Binding(var=k, binding=v) for k, v in inputs.items()],
        task_node=W.TaskNode(task_id=ident(task_name)),
    )


def branch_node() -> W.Node:
    and_ = C.ConjunctionExpression.LOGICAL_OPERATOR_AND
    or_ = C.ConjunctionExpression.LOGICAL_OPERATOR_OR
    cmp = C.ComparisonExpression
    # if n > 10 and n <= 100: big   elif n == 0 or n < 0: small   else: mid
    if_ = W.IfBlock(
        condition=conjunction(
            and_, comparison(cmp.OPERATOR_GT, "n", 10), comparison(cmp.OPERATOR_LTE, "n", 100)
        ),
        then_node=task_node("big", "double", x=promise(START, "n")),
    )
    elif_ = W.IfBlock(
        condition=conjunction(
            or_, comparison(cmp.OPERATOR_EQ, "n", 0), comparison(cmp.OPERATOR_LT, "n", 0)
        ),
        then_node=task_node("small", "double", x=const(0, int)),
    )
    elif2 = W.IfBlock(
        condition=conjunction(
            and_, comparison(cmp.OPERATOR_NEQ, "n", 5), comparison(cmp.OPERATOR_GTE, "n", 1)
        ),
        then_node=task_node("mid", "double", x=promise(START, "n")),
    )
    return W.Node(
        id="choose",
        inputs=[L.Binding(var="n", binding=promise(START, "n"))],
        upstream_node_ids=[],
        branch_node=W.BranchNode(
            case=if_, other=[elif_, elif2], else_node=task_node("else", "double", x=const(1, int))
        ),
    )


def failing_branch_node() -> W.Node:
    cmp = C.ComparisonExpression
    return W.Node(
        id="guard",
        inputs=[L.Binding(var="n", binding=promise(START, "n"))],
        branch_node=W.BranchNode(
            case=W.IfBlock(
                condition=comparison(cmp.OPERATOR_GT, "n", 0),
                then_node=task_node("ok", "double", x=promise(START, "n")),
            ),
            error=W.BranchFailure(message="n must be positive"),
        ),
    )


def array_node() -> W.Node:
    return W.Node(
        id="fanout",
        inputs=[
            L.Binding(
                var="x",
                binding=L.BindingData(
                    collection=L.BindingDataCollection(
                        bindings=[promise("gen", "xs", 0), const(2, int), promise(START, "n")]
                    )
                ),
            ),
            L.Binding(var="k", binding=const(3, int)),
        ],
        upstream_node_ids=["gen"],
        array_node=W.ArrayNode(
            node=task_node("fanout-sub", "double"),
            parallelism=4,
            min_success_ratio=0.5,
            broadcast_inputs=["k"],
        ),
    )


def array_node_min_successes() -> W.Node:
    n = array_node()
    n.id = "fanout2"
    n.array_node.min_successes = 2
    return n


def subworkflow() -> W.WorkflowTemplate:
    return W.WorkflowTemplate(
        id=ident("examples.sub", identifier_pb2.RESOURCE_TYPE_WORKFLOW),
        interface=iface({"n": int}, {"out": list[int]}),
        nodes=[task_node("d", "double", x=promise(START, "n"))],
        outputs=[
            L.Binding(
                var="out",
                binding=L.BindingData(
                    collection=L.BindingDataCollection(bindings=[promise("d", "o0")])
                ),
            )
        ],
        defaults=interface_pb2.ParameterMap(
            parameters=[
                interface_pb2.Parameter(var=var("n", int), default=to_literal(1, int, var="n")),
                interface_pb2.Parameter(var=var("m", int), required=True),
            ]
        ),
        description="a subworkflow",
    )


def launch_plan() -> W.LaunchPlan:
    return W.LaunchPlan(
        id=ident("examples.sub.lp", identifier_pb2.RESOURCE_TYPE_LAUNCH_PLAN),
        workflow_id=ident("examples.sub", identifier_pb2.RESOURCE_TYPE_WORKFLOW),
        fixed_inputs=L.LiteralMap(literals={"m": to_literal(2, int, var="m")}),
        default_inputs=interface_pb2.ParameterMap(
            parameters=[interface_pb2.Parameter(var=var("n", int), required=True)]
        ),
    )


def dynamic_job_spec() -> dynamic_job_pb2.DynamicJobSpec:
    """A generator's yield: a nested generator, a branch, an array, a subworkflow, a launch plan."""
    union_input = L.BindingData(
        promise=L.OutputReference(node_id=START, var="n"),
        union_variant=literal_type(int, where="union variant"),
    )
    return dynamic_job_pb2.DynamicJobSpec(
        nodes=[
            # A task node whose task is itself a generator: recursion.
            task_node("gen", "nested_gen", n=promise(START, "n"), maybe=union_input),
            branch_node(),
            failing_branch_node(),
            array_node(),
            array_node_min_successes(),
            W.Node(
                id="sub",
                inputs=[L.Binding(var="n", binding=promise("gen", "total"))],
                upstream_node_ids=["gen"],
                workflow_node=W.WorkflowNode(
                    sub_workflow_id=ident("examples.sub", identifier_pb2.RESOURCE_TYPE_WORKFLOW)
                ),
            ),
            W.Node(
                id="lp",
                inputs=[
                    L.Binding(
                        var="n",
                        binding=L.BindingData(
                            map=L.BindingDataMap(
                                bindings={"a": promise("sub", "out", "k", 1), "b": const(1, int)}
                            )
                        ),
                    )
                ],
                upstream_node_ids=["sub"],
                workflow_node=W.WorkflowNode(
                    launch_plan_id=ident(
                        "examples.sub.lp", identifier_pb2.RESOURCE_TYPE_LAUNCH_PLAN
                    )
                ),
            ),
        ],
        outputs=[L.Binding(var="total", binding=promise("gen", "total"))],
        tasks=[
            task("nested_gen", "dynamic", {"n": int, "maybe": int | None}, {"total": int}),
            task("double", "python", {"x": int}, {"o0": int}),
            process_task(),
        ],
        subworkflows=[subworkflow()],
        min_successes=1,
        launch_plans=[launch_plan()],
    )


def ts(seconds: int) -> Timestamp:
    return Timestamp(seconds=1_700_000_000 + seconds, nanos=123_000)


EXEC_ID = identifier_pb2.ExecutionIdentifier(project="p", domain="development", name="e1")
NODE_EXEC_ID = identifier_pb2.NodeExecutionIdentifier(node_id="gen", execution_id=EXEC_ID)
ERROR = errors_pb2.ExecutionError(
    code="ValueError",
    message="boom",
    kind=errors_pb2.ExecutionError.KIND_USER,
    recoverable=True,
    node_id="gen",
    details="Traceback ...",
)


def rich_inputs() -> L.LiteralMap:
    m = L.LiteralMap(literals={"rich": to_literal(RICH, Rich, var="rich")})
    m.literals["big"].offloaded.CopyFrom(
        L.OffloadedLiteral(
            uri="file:///data/blobs/ab",
            size_bytes=10_000_000,
            sha256="ab" * 32,
            type=literal_type(list[int], where="offloaded"),
        )
    )
    return m


def core_instances() -> list[Message]:
    spec = dynamic_job_spec()
    record_type = literal_type(Rich, where="rich")
    node_transition = events_pb2.NodeTransition(
        node_id="gen",
        phase=execution_pb2.NODE_PHASE_DYNAMIC_RUNNING,
        attempt=2,
        error=ERROR,
        cache_status=execution_pb2.CACHE_STATUS_MISS,
        dynamic=events_pb2.DynamicInfo(node_count=7, depth=2, spec_uri="file:///specs/1.pb"),
        parent_node_id="root",
        task_id=ident("nested_gen"),
        worker_id="w1",
    )
    return [
        spec,
        record_type,
        rich_inputs(),
        W.WorkflowTemplate(
            id=ident("examples.wf", identifier_pb2.RESOURCE_TYPE_WORKFLOW),
            interface=iface({"n": int}, {"total": int}),
            nodes=list(spec.nodes),
            outputs=list(spec.outputs),
        ),
        identifier_pb2.TaskExecutionIdentifier(
            task_id=ident("double"), node_execution_id=NODE_EXEC_ID, attempt=1
        ),
        events_pb2.ExecutionEvent(
            execution_id=EXEC_ID,
            sequence=41,
            occurred_at=ts(1),
            execution=events_pb2.ExecutionTransition(
                phase=execution_pb2.EXECUTION_PHASE_FAILED, error=ERROR
            ),
        ),
        events_pb2.ExecutionEvent(
            execution_id=EXEC_ID, sequence=42, occurred_at=ts(2), node=node_transition
        ),
    ]


def execution() -> ES.Execution:
    return ES.Execution(
        id=EXEC_ID,
        workflow_id=ident("examples.wf", identifier_pb2.RESOURCE_TYPE_WORKFLOW),
        launch_plan_id=ident("examples.sub.lp", identifier_pb2.RESOURCE_TYPE_LAUNCH_PLAN),
        phase=execution_pb2.EXECUTION_PHASE_RUNNING,
        error=ERROR,
        created_at=ts(0),
        updated_at=ts(5),
        nodes=ES.NodeCounts(total=9, succeeded=3, running=2, failed=1, skipped=1, cached=2),
        labels={"team": "data", "env": "dev"},
        last_sequence=42,
    )


def node_execution() -> ES.NodeExecution:
    return ES.NodeExecution(
        id=NODE_EXEC_ID,
        phase=execution_pb2.NODE_PHASE_SUCCEEDED,
        attempt=1,
        error=ERROR,
        cache_status=execution_pb2.CACHE_STATUS_HIT,
        parent_node_id="root",
        is_dynamic=True,
        created_at=ts(0),
        updated_at=ts(3),
        task_id=ident("nested_gen"),
    )


def service_instances() -> list[Message]:
    spec = dynamic_job_spec()
    tpl = spec.tasks[0]
    wf = spec.subworkflows[0]
    lp = spec.launch_plans[0]
    inputs = L.LiteralMap(literals={"n": to_literal(5, int, var="n")})
    outputs = L.LiteralMap(literals={"total": to_literal(10, int, var="total")})
    listing: dict[str, Any] = {
        "project": "p",
        "domain": "development",
        "name": "x",
        "page_size": 10,
        "page_token": "t",
    }
    core_events = [m for m in core_instances() if isinstance(m, events_pb2.ExecutionEvent)]
    return [
        ES.CreateExecutionRequest(
            request_id="r1",
            workflow_id=ident("examples.wf", identifier_pb2.RESOURCE_TYPE_WORKFLOW),
            inputs=inputs,
            project="p",
            domain="development",
            name="e1",
            labels={"a": "b"},
        ),
        ES.CreateExecutionRequest(launch_plan_id=lp.id, inputs=inputs),
        ES.CreateExecutionResponse(execution=execution()),
        ES.GetExecutionRequest(id=EXEC_ID),
        ES.GetExecutionResponse(execution=execution()),
        ES.ListExecutionsRequest(
            project="p",
            domain="development",
            phases=[execution_pb2.EXECUTION_PHASE_RUNNING, execution_pb2.EXECUTION_PHASE_QUEUED],
            page_size=50,
            page_token="abc",
        ),
        ES.ListExecutionsResponse(executions=[execution()], next_page_token="def"),
        ES.TerminateExecutionRequest(id=EXEC_ID, reason="user asked"),
        ES.TerminateExecutionResponse(execution=execution()),
        ES.WatchExecutionRequest(id=EXEC_ID, after_sequence=40),
        ES.WatchExecutionResponse(events=core_events, nodes=ES.NodeCounts(total=1, running=1)),
        ES.WatchExecutionRequest(id=EXEC_ID, after_sequence=40, counts_only=True),
        ES.WatchExecutionResponse(
            events=core_events[:1],
            nodes=ES.NodeCounts(total=3, running=2, queued=1),
            sequence=41,
            running=[ES.NameCount(name="t", count=1)],
            waiting="no connected worker serves queue 'gpu'",
        ),
        ES.GetExecutionDataRequest(id=EXEC_ID),
        ES.GetExecutionDataResponse(inputs=inputs, outputs=outputs),
        ES.ListNodeExecutionsRequest(id=EXEC_ID, parent_node_id="gen", page_size=5, page_token="x"),
        ES.ListNodeExecutionsResponse(node_executions=[node_execution()], next_page_token="y"),
        ES.GetNodeExecutionDataRequest(id=NODE_EXEC_ID),
        ES.GetNodeExecutionDataResponse(inputs=inputs, outputs=outputs),
        ES.GetDynamicSpecRequest(id=NODE_EXEC_ID),
        ES.GetDynamicSpecResponse(spec=spec, generator=tpl, subworkflows=[wf]),
        RS.RegisterRequest(tasks=list(spec.tasks), workflows=[wf], launch_plans=[lp]),
        RS.RegisterResponse(created=[tpl.id, wf.id], unchanged=[lp.id]),
        RS.GetTaskRequest(id=tpl.id),
        RS.GetTaskResponse(task=tpl),
        RS.ListTasksRequest(**listing),
        RS.ListTasksResponse(tasks=list(spec.tasks), next_page_token="n"),
        RS.GetWorkflowRequest(id=wf.id),
        RS.GetWorkflowResponse(workflow=wf),
        RS.ListWorkflowsRequest(**listing),
        RS.ListWorkflowsResponse(workflows=[wf], next_page_token="n"),
        RS.GetLaunchPlanRequest(id=lp.id),
        RS.GetLaunchPlanResponse(launch_plan=lp),
        RS.ListLaunchPlansRequest(**listing),
        RS.ListLaunchPlansResponse(launch_plans=[lp], next_page_token="n"),
        WS.SessionRequest(
            hello=WS.Hello(
                worker_id="w1", queues=["default", "gpu"], slots=8, language="python", version="0.1"
            )
        ),
        WS.SessionRequest(heartbeat=WS.Heartbeat(running_assignment_ids=["a1", "a2"])),
        WS.SessionRequest(
            results=WS.ResultBatch(
                results=[
                    WS.TaskResult(assignment_id="a1", attempt=1, outputs=outputs),
                    WS.TaskResult(assignment_id="a2", attempt=1, dynamic_job_spec=spec),
                    WS.TaskResult(assignment_id="a3", attempt=2, error=ERROR),
                ]
            )
        ),
        WS.SessionResponse(
            welcome=WS.Welcome(
                session_id="s1",
                heartbeat_interval=Duration(seconds=5),
                lease_duration=Duration(seconds=30),
            )
        ),
        WS.SessionResponse(
            assignments=WS.AssignmentBatch(
                assignments=[
                    WS.Assignment(
                        assignment_id="a1",
                        attempt=1,
                        template_key="k1",
                        task_template=tpl,
                        inputs=inputs,
                        deadline=ts(60),
                        task_execution_id=identifier_pb2.TaskExecutionIdentifier(
                            task_id=tpl.id, node_execution_id=NODE_EXEC_ID, attempt=1
                        ),
                        output_prefix="file:///data/out/a1/",
                    ),
                    # A template the worker has already seen travels by reference only.
                    WS.Assignment(assignment_id="a2", attempt=1, template_key="k1", inputs=inputs),
                ]
            )
        ),
        WS.SessionResponse(cancellations=WS.Cancellations(assignment_ids=["a1"], reason="aborted")),
    ]


def newer_instances() -> list[Message]:
    """Messages of the second round of the contract: data, logs, schedules, validation."""
    tpl = dynamic_job_spec().tasks[0]
    schedule = W.Schedule(
        cron="0 * * * *",
        kickoff_time_input="at",
        catch_up=W.Schedule.CATCH_UP_ALL,
        start_time=ts(0),
    )
    lp = W.LaunchPlan(
        id=ident("examples.hourly", identifier_pb2.RESOURCE_TYPE_LAUNCH_PLAN),
        workflow_id=ident("examples.wf", identifier_pb2.RESOURCE_TYPE_WORKFLOW),
        schedule=schedule,
    )
    state = SS.ScheduleState(
        launch_plan_id=lp.id,
        schedule=W.Schedule(fixed_rate=Duration(seconds=90)),
        paused=True,
        next_tick=ts(90),
        last_tick=ts(0),
        last_execution=EXEC_ID,
    )
    secret = tasks_pb2.TaskTemplate()
    secret.CopyFrom(tpl)
    secret.metadata.secrets.add(name="warehouse", env_var="DB_URL")
    secret.metadata.code_digest = "c0de"
    secret.metadata.retries.backoff.FromSeconds(2)
    secret.metadata.retries.backoff_multiplier = 3.0
    secret.metadata.retries.max_backoff.FromSeconds(60)
    secret.metadata.retries.backoff_jitter = 0.1
    line = ES.LogLine(
        node_id="n0", attempt=2, stream=ES.LOG_STREAM_STDOUT, time=ts(3), text="hello"
    )
    chunk = WS.LogChunk(
        assignment_id="a1", attempt=1, stream=WS.LogChunk.STREAM_STDERR, time=ts(4), text="x\n"
    )
    return [
        lp,
        secret,
        SS.ListSchedulesRequest(project="p", domain="d"),
        SS.ListSchedulesResponse(schedules=[state]),
        SS.PauseScheduleRequest(launch_plan_id=lp.id),
        SS.PauseScheduleResponse(schedule=state),
        SS.ResumeScheduleRequest(launch_plan_id=lp.id),
        SS.ResumeScheduleResponse(schedule=state),
        DS.ReadDataRequest(uri="plait-data://p/d/x1/k", offset=10),
        DS.ReadDataResponse(chunk=b"abc", size_bytes=3, sha256="ab"),
        DS.WriteDataRequest(
            header=DS.WriteDataHeader(execution_id=EXEC_ID, size_bytes=3, sha256="ab")
        ),
        DS.WriteDataRequest(chunk=b"abc"),
        DS.WriteDataResponse(uri="plait-data://p/d/x1/k", size_bytes=3, sha256="ab"),
        ES.DeleteExecutionRequest(id=EXEC_ID),
        ES.DeleteExecutionResponse(),
        ES.StreamLogsRequest(id=EXEC_ID, node_id="n0", attempt=2, follow=True, after_position=7),
        ES.StreamLogsResponse(lines=[line], position=8),
        RS.ValidateTemplatesRequest(tasks=[tpl], workflows=[], launch_plans=[lp]),
        RS.ValidateTemplatesResponse(
            violations=[RS.FieldViolation(field="tasks[0].id.name", description="bad")]
        ),
        WS.SessionRequest(logs=WS.LogBatch(chunks=[chunk])),
        WS.SessionRequest(
            hello=WS.Hello(
                worker_id="w2", queues=["q"], slots=1, tasks=[tpl.id], task_types=["sql"]
            )
        ),
    ]


def console_instances() -> list[Message]:
    """Messages the console added: one level of a graph, counts per phase, filters."""
    node = ES.NodeExecution(
        id=identifier_pb2.NodeExecutionIdentifier(node_id="n0/n1", execution_id=EXEC_ID),
        phase=execution_pb2.NODE_PHASE_RUNNING,
        name="square",
    )
    counts = [ES.PhaseCount(phase=execution_pb2.NODE_PHASE_SUCCEEDED, count=9000)]
    group = ES.GraphNode(
        id="n0/*square",
        name="square",
        kind=ES.GRAPH_NODE_KIND_TASK,
        group_size=10000,
        group_phases=counts,
        upstream_ids=["n0/n0"],
        target_id=ident("examples.square", identifier_pb2.RESOURCE_TYPE_TASK),
    )
    case = ES.GraphNode(
        id="n0/n1",
        name="sort",
        kind=ES.GRAPH_NODE_KIND_WORKFLOW,
        execution=node,
        condition="if n <= 5",
        has_children=True,
        inner_phases=counts,
    )
    return [
        ES.GetNodeGraphRequest(id=EXEC_ID, parent_node_id="n0", group_threshold=50),
        ES.GetNodeGraphResponse(
            parent=node,
            parent_kind=ES.GRAPH_NODE_KIND_TASK,
            nodes=[case, group],
            node_count=10001,
            note="",
        ),
        ES.CountNodeExecutionsRequest(id=EXEC_ID, node_id="n0"),
        ES.CountNodeExecutionsResponse(phases=counts, total=9000),
        ES.ListNodeExecutionsRequest(
            id=EXEC_ID,
            phases=[execution_pb2.NODE_PHASE_FAILED],
            name="square",
            top_level_only=True,
        ),
        ES.WatchExecutionRequest(id=EXEC_ID, after_sequence=3, node_id="n0/n1"),
    ]


INSTANCES = core_instances() + service_instances() + newer_instances() + console_instances()


def _id(m: Message) -> str:
    return m.DESCRIPTOR.name


@pytest.mark.parametrize("message", INSTANCES, ids=_id)
def test_binary_round_trip(message: Message) -> None:
    data = message.SerializeToString()
    back = type(message).FromString(data)
    assert back == message
    assert back.SerializeToString(deterministic=True) == message.SerializeToString(
        deterministic=True
    )


@pytest.mark.parametrize("message", INSTANCES, ids=_id)
def test_json_round_trip(message: Message) -> None:
    text = json_format.MessageToJson(message)
    back = json_format.Parse(text, type(message)())
    assert back == message


def _walk(message: Message) -> Iterator[Message]:
    yield message
    for fd, value in message.ListFields():
        if fd.type != descriptor.FieldDescriptor.TYPE_MESSAGE:
            continue
        mt = fd.message_type
        assert mt is not None
        if mt.GetOptions().map_entry:
            value_fd = mt.fields_by_name["value"]
            if value_fd.type == descriptor.FieldDescriptor.TYPE_MESSAGE:
                for v in value.values():
                    yield from _walk(v)
        elif fd.is_repeated:
            for v in value:
                yield from _walk(v)
        else:
            yield from _walk(value)


def _contract_modules() -> list[ModuleType]:
    mods = []
    for pkg in (plaitidl.core.v1, plaitidl.service.v1):
        for info in pkgutil.iter_modules(pkg.__path__):
            if info.name.endswith("_pb2"):
                mods.append(importlib.import_module(f"{pkg.__name__}.{info.name}"))
    return mods


def _declared(desc: descriptor.Descriptor) -> Iterator[str]:
    if desc.GetOptions().map_entry:
        return
    yield desc.full_name
    for nested in desc.nested_types:
        yield from _declared(nested)


def test_every_message_type_is_covered() -> None:
    declared: set[str] = set()
    for mod in _contract_modules():
        for desc in mod.DESCRIPTOR.message_types_by_name.values():
            declared.update(_declared(desc))
    assert len(declared) > 90  # sanity: the packages were found
    covered = {m.DESCRIPTOR.full_name for inst in INSTANCES for m in _walk(inst)}
    missing = sorted(declared - covered)
    assert not missing, f"messages without an instance in test_protos.py: {missing}"


def test_dynamic_spec_shape() -> None:
    """The spec really contains what the contract issue asks for."""
    spec = dynamic_job_spec()
    targets = {n.WhichOneof("target") for n in spec.nodes}
    assert targets == {"task_node", "branch_node", "array_node", "workflow_node"}
    refs = {
        n.workflow_node.WhichOneof("reference") for n in spec.nodes if n.HasField("workflow_node")
    }
    assert refs == {"sub_workflow_id", "launch_plan_id"}
    assert any(t.type == "dynamic" for t in spec.tasks)
    branch = next(n for n in spec.nodes if n.id == "choose").branch_node
    assert len(branch.other) >= 1 and branch.HasField("else_node")
    ops = {b.condition.conjunction.operator for b in [branch.case, *branch.other]}
    assert ops == {
        C.ConjunctionExpression.LOGICAL_OPERATOR_AND,
        C.ConjunctionExpression.LOGICAL_OPERATOR_OR,
    }
