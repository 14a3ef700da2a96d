// The task templates the Node.js worker serves, written directly as protos (plain objects in
// the shape of plaitidl.core.v1.TaskTemplate), and the names of the Python tasks the example
// uses (served by `plait worker tests/workflows/node_mix.py`).

import { INT, STR, contentVersion, iface, listOf, toStruct } from "./plait.js";

/** The queue the Node worker serves; a WorkerTarget with this queue is dispatched to it. */
export const NODE_QUEUE = "node";

/** Registered names of the Python tasks (see tests/workflows/node_mix.py). */
export const PY_SQUARE = "node_mix.square"; // square(x: int) -> o0: int
export const PY_TOTAL = "node_mix.total"; // total(xs: list[int]) -> o0: int

/** The custom task type this worker serves (and declares in its hello). */
export const FORMAT_TYPE = "format";

/** The task types this worker runs: its plain tasks, its generator, and `format`. */
export const NODE_TASK_TYPES = ["javascript-task", "dynamic", FORMAT_TYPE];

function nodeTask(name, type, handler, inputs, outputs, description, custom = null) {
  const template = {
    id: { resource_type: "RESOURCE_TYPE_TASK", project: "default", domain: "development", name, version: "" },
    type,
    metadata: {
      retries: { retries: 0 },
      runtime: { type: "RUNTIME_TYPE_OTHER", language: "javascript", version: "0.1.0" },
      description,
    },
    interface: iface(inputs, outputs),
    // The `target` oneof: exactly one of `worker` / `process`.
    worker: { queue: NODE_QUEUE, handler },
  };
  // A task type's configuration travels in `custom`, a google.protobuf.Struct.
  if (custom) template.custom = toStruct(custom);
  // Registered versions are immutable: derive the version from the content, so a changed
  // template gets a new version instead of ALREADY_EXISTS.
  template.id.version = contentVersion(template);
  return template;
}

/** greet(name: str, total: int) -> greeting: str, a plain task. */
export const GREET = nodeTask(
  "node_mix.greet",
  "javascript-task",
  "greet",
  [["name", STR], ["total", INT]],
  [["greeting", STR]],
  "Greets `name` and reports `total` (an int64, kept exact).",
);

/** fan_out(n: int) -> out: list[int], a generator: yields n Python `square` nodes. */
export const FAN_OUT = nodeTask(
  "node_mix.fan_out",
  "dynamic",
  "fan_out",
  [["n", INT]],
  [["out", listOf(INT)]],
  "Yields a DynamicJobSpec of n nodes running the Python task node_mix.square on 0..n-1.",
);

/**
 * shout(name: str, total: int) -> text: str, a task of the custom type "format": the engine has
 * no plugin for it, so it accepts its `custom` as is, and sends it only to workers that declare
 * the type (this one). The worker reads the configuration: a template with {input}
 * placeholders, and whether to upper-case the result.
 */
export const SHOUT = nodeTask(
  "node_mix.shout",
  FORMAT_TYPE,
  "format",
  [["name", STR], ["total", INT]],
  [["text", STR]],
  "Formats its inputs with the template in its configuration (task type `format`).",
  { template: "{name} has {total} points", uppercase: true },
);

export const NODE_TASKS = [GREET, FAN_OUT, SHOUT];
