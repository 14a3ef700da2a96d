"""The compiler: one checker for registered workflows and for dynamic job specs. Pure, no I/O.

Both entry points return a *closure*: a `DynamicJobSpec` whose `nodes` and `outputs` are the
root graph's, and whose `tasks`, `subworkflows` and `launch_plans` hold every template the graph
reaches, transitively, so the scheduler never needs the registry to run it.

Errors are collected in one pass and raised once as `InvalidArgument`, whose violations carry
field paths into the compiled message (``nodes[3].inputs.numbers``). Violations inside a
template that the request does not contain (a registered subworkflow) are reported at the
field that references it, with the inner path in the description.

Modules, from the bottom up: `limits` (Limits, Resolver), `validation` (names, identifiers,
nesting, labels: what the door accepts), `report` (bounded violations), `graph` (upstreams,
counts, cycles), `scope`, `templates` (one template on its own), `inputs` (execution inputs),
`closure` (template lookup and the closure), `targets`, `bindings`, `conditions`, `walker`
(the two passes over a graph) and `entry` (the entry points).
"""

from plait_engine.compiler.entry import compile_dynamic, compile_workflow, node_output_types
from plait_engine.compiler.graph import node_upstreams
from plait_engine.compiler.inputs import resolve_execution_inputs
from plait_engine.compiler.limits import MAX_VIOLATIONS, Limits, Resolver
from plait_engine.compiler.templates import validate_launch_plan, validate_task
from plait_engine.compiler.validation import (
    execution_name_problems,
    identifier_problems,
    labels_problems,
    literal_depth_problems,
    type_depth,
)
from plait_engine.ids import id_key

__all__ = [
    "MAX_VIOLATIONS",
    "Limits",
    "Resolver",
    "compile_dynamic",
    "compile_workflow",
    "execution_name_problems",
    "id_key",
    "identifier_problems",
    "labels_problems",
    "literal_depth_problems",
    "node_output_types",
    "node_upstreams",
    "resolve_execution_inputs",
    "type_depth",
    "validate_launch_plan",
    "validate_task",
]
