"""Recovery: an adopted execution's graphs are rebuilt by walking them again while consuming
the stored node records. A node that succeeded is not run again; a generator whose spec was
stored is not asked for it again; a task that was running is dispatched as a new attempt."""

from __future__ import annotations

import logging

from plaitidl.core.v1 import dynamic_job_pb2, errors_pb2, execution_pb2, literals_pb2

from plait_engine.blob import Payloads
from plait_engine.scheduler.journal import count
from plait_engine.scheduler.state import NodeExec, Run
from plait_engine.store import DynamicSpecRecord, ExecutionPayload, NodeRecord, Store

log = logging.getLogger("plait.scheduler")


class Adopted:
    """What the loop loads for an execution before the walker starts it."""

    def __init__(
        self,
        run: Run,
        closure: dynamic_job_pb2.DynamicJobSpec,
        inputs: literals_pb2.LiteralMap,
    ) -> None:
        self.run = run
        self.closure = closure
        self.inputs = inputs


async def load(store: Store, payloads: Payloads, run: Run) -> Adopted | None:
    """Read an execution's payload, node records and specs (blobs included), off the loop's
    critical path. None when the execution is gone."""
    payload: ExecutionPayload | None = await store.get_payload(run.eid)
    if payload is None:
        return None
    nodes = await store.node_records(run.eid)
    for rec in nodes:
        if rec.outputs and payloads.is_pointer(rec.outputs):
            rec.outputs = await payloads.load(rec.outputs)
        if rec.inputs and payloads.is_pointer(rec.inputs):
            rec.inputs = await payloads.load(rec.inputs)
    specs = await store.dynamic_specs(run.eid)
    for s in specs:
        s.closure = await payloads.load_spec(s.closure)
    run.recovered = {r.node_id: r for r in nodes}
    run.specs = {s.node_id: s for s in specs}
    if nodes:
        log.info("recovering execution %s with %d stored nodes", run.key, len(nodes))
    closure = dynamic_job_pb2.DynamicJobSpec.FromString(await payloads.load(payload.closure))
    inputs = literals_pb2.LiteralMap.FromString(await payloads.load(payload.inputs))
    return Adopted(run, closure, inputs)


def restore(n: NodeExec, rec: NodeRecord) -> None:
    """Put a node back in the state its record holds (counted, not written again)."""
    n.persisted = True
    n.attempt = rec.attempt
    n.user_failures = rec.user_failures
    n.system_failures = rec.system_failures
    n.created_at = rec.created_at
    n.cache_status = rec.cache_status
    n.detail = rec.detail
    n.task_key = rec.task_key
    n.is_dynamic = rec.is_dynamic
    count(n.frame.run, 0, rec.phase, rec.cache_status)
    n.phase = rec.phase
    if rec.phase == execution_pb2.NODE_PHASE_SUCCEEDED:
        n.out_bytes = rec.outputs  # all it needs now (see `NodeExec.compact`)
        return
    if rec.inputs:
        n.inputs = literals_pb2.LiteralMap.FromString(rec.inputs)
    if rec.outputs:
        n.outputs = literals_pb2.LiteralMap.FromString(rec.outputs)


def recorded_error(rec: NodeRecord) -> errors_pb2.ExecutionError:
    """The error a failed node's record holds."""
    return (
        errors_pb2.ExecutionError.FromString(rec.error)
        if rec.error
        else errors_pb2.ExecutionError()
    )


__all__ = ["Adopted", "DynamicSpecRecord", "load", "recorded_error", "restore"]
