"""The compiler never crashes on input: mutated templates compile or raise `InvalidArgument`.

Identifiers and node ids get their own round: set to hostile strings (paths, NUL, huge), they
are either refused or, when accepted, safe to use as path parts.
"""

from __future__ import annotations

import contextlib
import random
from pathlib import Path
from typing import Any

import pytest
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from plait import _loader, _serialize
from plait_engine import compiler
from plait_engine.errors import InvalidArgument
from plait_engine.ids import START_NODE
from plaitidl.core.v1 import dynamic_job_pb2, identifier_pb2, tasks_pb2, workflow_pb2

FD = FieldDescriptor
ROOT = Path(__file__).resolve().parents[2]
STRINGS = ["", "start-node", "a/b", "x" * 300, "n0", "ghost", "é", "o0"]
HOSTILE = [
    *STRINGS,
    ".",
    "..",
    "../../etc/passwd",
    "nul\0byte",
    "x" * 10_000,
    "-flag",
    ".hidden",
    "a..b",
    "C:\\x",
    "ok_name",
    "v2",
    "n0-case0",
    "a.b-c",
    "_" + "x" * 62,
]


def _is_map(f: Any) -> bool:
    return bool(f.message_type is not None and f.message_type.GetOptions().map_entry)


def _messages(m: Message, out: list[Message]) -> None:
    out.append(m)
    f: Any
    for f, v in m.ListFields():
        if f.type != FD.TYPE_MESSAGE:
            continue
        if _is_map(f):
            for k in v:
                if isinstance(v[k], Message):
                    _messages(v[k], out)
        elif f.is_repeated:
            for x in v:
                _messages(x, out)
        else:
            _messages(v, out)


def _mutate(rng: random.Random, root: Message) -> None:
    found: list[Message] = []
    _messages(root, found)
    target = rng.choice(found)
    f: Any = rng.choice(target.DESCRIPTOR.fields)
    try:
        if rng.random() < 0.4:
            target.ClearField(f.name)
        elif f.is_repeated:
            rep = getattr(target, f.name)
            if f.type == FD.TYPE_MESSAGE and not _is_map(f) and rep:
                if rng.random() < 0.5:
                    rep.add().CopyFrom(rep[rng.randrange(len(rep))])
                else:
                    del rep[rng.randrange(len(rep))]
        elif f.type == FD.TYPE_STRING:
            setattr(target, f.name, rng.choice(STRINGS))
        elif f.type in (FD.TYPE_INT64, FD.TYPE_UINT32, FD.TYPE_INT32, FD.TYPE_UINT64):
            setattr(target, f.name, rng.choice([0, 1, 7, 2**31 - 1]))
        elif f.type == FD.TYPE_ENUM:
            setattr(target, f.name, rng.choice([v.number for v in f.enum_type.values]))
        elif f.type == FD.TYPE_BOOL:
            setattr(target, f.name, not getattr(target, f.name))
        elif f.type == FD.TYPE_MESSAGE:
            getattr(target, f.name).SetInParent()
    except (TypeError, ValueError, AttributeError):
        pass  # a mutation the proto itself refuses


class _Resolver:
    def __init__(
        self, tasks: list[tasks_pb2.TaskTemplate], wfs: list[workflow_pb2.WorkflowTemplate]
    ):
        self.tasks = {compiler.id_key(t.id): t for t in tasks}
        self.wfs = {compiler.id_key(w.id): w for w in wfs}

    def get_task(self, id: identifier_pb2.Identifier) -> tasks_pb2.TaskTemplate | None:
        return self.tasks.get(compiler.id_key(id))

    def get_workflow(self, id: identifier_pb2.Identifier) -> workflow_pb2.WorkflowTemplate | None:
        return self.wfs.get(compiler.id_key(id))

    def get_launch_plan(self, id: identifier_pb2.Identifier) -> workflow_pb2.LaunchPlan | None:
        return None


def test_mutated_templates_compile_or_are_refused_cleanly() -> None:
    rng = random.Random(20261122)
    entities = [
        getattr(_loader.load_path(str(ROOT / "examples" / f"{module}.py")), name)
        for module, name in (
            ("merge_sort", "merge_sort"),
            ("dynamic_workflow", "dynamic_wf"),
            ("generate_others", "fan_out"),
        )
    ]
    bundles = [_serialize.collect(e) for e in entities]
    outcomes = {"compiled": 0, "refused": 0}
    for _ in range(600):
        b = rng.choice(bundles)
        tasks = [tasks_pb2.TaskTemplate.FromString(t.SerializeToString()) for t in b.tasks]
        wfs = [workflow_pb2.WorkflowTemplate.FromString(w.SerializeToString()) for w in b.workflows]
        messages: list[Message] = [*tasks, *wfs]
        for _ in range(rng.randint(1, 3)):
            _mutate(rng, rng.choice(messages))
        resolver = _Resolver(tasks, wfs)
        try:
            for t in tasks:
                compiler.validate_task(t)
            for w in wfs:
                compiler.compile_workflow(w, resolver)
            # The same mutations on a yielded spec: the generator's own closure as a spec.
            spec = dynamic_job_pb2.DynamicJobSpec(nodes=wfs[0].nodes, outputs=wfs[0].outputs)
            gen = tasks_pb2.TaskTemplate(interface=wfs[0].interface)
            gen.id.name, gen.id.version = "gen", "v1"
            compiler.compile_dynamic(spec, gen, resolver)
            outcomes["compiled"] += 1
        except InvalidArgument as exc:
            assert exc.message and exc.violations  # a clear error naming fields
            outcomes["refused"] += 1
    # Both outcomes happen: the mutations are neither all harmless nor all fatal.
    assert outcomes["compiled"] > 20 and outcomes["refused"] > 100, outcomes


def _identifiers_and_nodes(
    m: Message, ids: list[identifier_pb2.Identifier], nodes: list[workflow_pb2.Node]
) -> None:
    found: list[Message] = []
    _messages(m, found)
    for x in found:
        if isinstance(x, identifier_pb2.Identifier):
            ids.append(x)
        elif isinstance(x, workflow_pb2.Node):
            nodes.append(x)


def _path_safe(part: str, max_len: int) -> bool:
    return (
        0 < len(part) <= max_len
        and part not in (".", "..")
        and not part.startswith(".")
        and not any(c in part for c in "/\\\0")
        and part.isascii()
    )


def _assert_path_safe(closure: dynamic_job_pb2.DynamicJobSpec) -> None:
    ids: list[identifier_pb2.Identifier] = []
    nodes: list[workflow_pb2.Node] = []
    _identifiers_and_nodes(closure, ids, nodes)
    for i in ids:
        for part, max_len in (("project", 64), ("domain", 64), ("name", 255), ("version", 128)):
            value = getattr(i, part)
            assert value == "" or _path_safe(value, max_len), (part, value[:100])
    for n in nodes:
        inner = n.HasField("task_node") and n.id == ""  # an array's inner node may have no id
        assert inner or (_path_safe(n.id, 63) and n.id != START_NODE), n.id[:100]


def test_hostile_identifiers_and_node_ids_are_refused_or_path_safe() -> None:
    rng = random.Random(20261130)
    entities = [
        getattr(_loader.load_path(str(ROOT / "examples" / f"{module}.py")), name)
        for module, name in (
            ("merge_sort", "merge_sort"),
            ("dynamic_workflow", "dynamic_wf"),
            ("generate_others", "fan_out"),
        )
    ]
    bundles = [_serialize.collect(e) for e in entities]
    outcomes = {"compiled": 0, "refused": 0}
    for _ in range(400):
        b = rng.choice(bundles)
        tasks = [tasks_pb2.TaskTemplate.FromString(t.SerializeToString()) for t in b.tasks]
        wfs = [workflow_pb2.WorkflowTemplate.FromString(w.SerializeToString()) for w in b.workflows]
        ids: list[identifier_pb2.Identifier] = []
        nodes: list[workflow_pb2.Node] = []
        for m in (*tasks, *wfs):
            _identifiers_and_nodes(m, ids, nodes)
        for _ in range(rng.randint(1, 2)):
            if rng.random() < 0.5:
                target: Message = rng.choice(ids)
                part = rng.choice(["project", "domain", "name", "version"])
            else:
                target, part = rng.choice(nodes), "id"
            setattr(target, part, rng.choice(HOSTILE))
        resolver = _Resolver(tasks, wfs)
        try:
            for t in tasks:
                compiler.validate_task(t)
            closures = [compiler.compile_workflow(w, resolver) for w in wfs]
            spec = dynamic_job_pb2.DynamicJobSpec(nodes=wfs[0].nodes, outputs=wfs[0].outputs)
            gen = tasks_pb2.TaskTemplate(interface=wfs[0].interface)
            gen.id.name, gen.id.version = "gen", "v1"
            closures.append(compiler.compile_dynamic(spec, gen, resolver))
        except InvalidArgument as exc:
            assert exc.message and exc.violations
            assert len(exc.message) < 4_000 and len(exc.violations) <= compiler.MAX_VIOLATIONS
            outcomes["refused"] += 1
            continue
        for closure in closures:
            _assert_path_safe(closure)
        outcomes["compiled"] += 1
    # Both outcomes happen: some hostile-looking strings are fine, most are refused.
    assert outcomes["compiled"] > 20 and outcomes["refused"] > 100, outcomes


def _verdict(compile_once: Any) -> Any:
    try:
        return ("compiled", compile_once().SerializeToString(deterministic=True))
    except InvalidArgument as exc:
        return ("refused", exc.message, [(v.field, v.description) for v in exc.violations])


def test_the_fast_path_gives_the_general_verdict_on_mutated_specs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Common nodes are checked by `compiler.fast`; on any spec, mutated or not, the verdict
    (the closure, or every violation in order) is the one the general checker gives."""
    from plait import _dynamic
    from plait_engine.compiler import fast

    from tests.workflows import wire_shapes

    rng = random.Random(20261201)
    generator = wire_shapes.every_value.template
    base = _dynamic.build_spec(wire_shapes.every_value, {"n": 6})
    outcomes = {"compiled": 0, "refused": 0}
    for round_ in range(300):
        spec = dynamic_job_pb2.DynamicJobSpec.FromString(base.SerializeToString())
        for _ in range(rng.randint(0 if round_ < 5 else 1, 3)):
            with contextlib.suppress(IndexError):  # a message without fields to mutate
                _mutate(rng, rng.choice([*spec.nodes, spec]))
        resolver = _Resolver(list(spec.tasks), list(spec.subworkflows))

        def once(s: Any = spec, r: Any = resolver) -> Any:
            return compiler.compile_dynamic(s, generator, r)

        fast_one = _verdict(once)
        with monkeypatch.context() as m:
            m.setattr(fast.FastNodes, "plan", lambda self, node: (None, b""))
            m.setattr(fast.FastNodes, "check", lambda self, *a: False)
            general = _verdict(once)
        assert fast_one == general
        outcomes[fast_one[0]] += 1
    assert outcomes["compiled"] > 10 and outcomes["refused"] > 50, outcomes
