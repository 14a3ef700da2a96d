#!/usr/bin/env node
// A plait client in Node.js: registers a workflow written directly as protos, runs it, streams
// its events and prints its outputs.
//
//   node client.js --engine HOST:PORT [--n 5] [--name plait] [--wait 30] [--timeout 120]
//
// The workflow `node_mix.wf(n: int, name: str) -> (squares: list[int], total: int, greeting: str)`
// mixes two languages:
//
//   fan    node_mix.fan_out  (Node generator)  n      -> out: [sq0 .. sq{n-1}] = Python square(i)
//   sum    node_mix.total    (Python task)     fan.out -> o0
//   greet  node_mix.greet    (Node task)       name, sum.o0 -> greeting
//
// Exit code 0 when the execution succeeds; otherwise 1, with the engine's error on stderr.
// The last line printed is `outputs <JSON>` (int64 values beyond 2^53 printed as strings).

import { randomUUID } from "node:crypto";
import {
  INT,
  STR,
  START_NODE,
  Status,
  bind,
  connect,
  contentVersion,
  describeError,
  iface,
  intLit,
  listOf,
  mapToPlain,
  parseArgs,
  promise,
  strLit,
} from "./plait.js";
import { FAN_OUT, GREET, NODE_TASKS, PY_SQUARE, PY_TOTAL } from "./tasks.js";

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const TERMINAL = new Set(["EXECUTION_PHASE_SUCCEEDED", "EXECUTION_PHASE_FAILED", "EXECUTION_PHASE_ABORTED"]);

/**
 * The newest registered version of a task (GetTask with an empty version), waiting up to
 * `waitSeconds` for it to appear (the Python worker registers its tasks when it starts).
 */
async function newestTask(clients, name, waitSeconds) {
  const deadline = Date.now() + waitSeconds * 1000;
  for (;;) {
    try {
      return (await clients.call("registry", "GetTask", { id: { name, version: "" } })).task;
    } catch (err) {
      const retriable = err.code === Status.NOT_FOUND || err.code === Status.UNAVAILABLE;
      if (!retriable || Date.now() > deadline) throw err;
      await sleep(200);
    }
  }
}

/** The workflow as a WorkflowTemplate proto, pinned to the task versions given. */
function workflow(total) {
  const totalIn = total.interface.inputs.variables[0].name; // "xs"
  const totalOut = total.interface.outputs.variables[0].name; // "o0"
  const wf = {
    id: { resource_type: "RESOURCE_TYPE_WORKFLOW", project: "default", domain: "development", name: "node_mix.wf", version: "" },
    interface: iface(
      [["n", INT], ["name", STR]],
      [["squares", listOf(INT)], ["total", INT], ["greeting", STR]],
    ),
    nodes: [
      // Promises on START_NODE read the workflow's inputs.
      { id: "fan", inputs: [bind("n", promise(START_NODE, "n"))], task_node: { task_id: FAN_OUT.id } },
      { id: "sum", inputs: [bind(totalIn, promise("fan", "out"))], task_node: { task_id: total.id } },
      {
        id: "greet",
        inputs: [bind("name", promise(START_NODE, "name")), bind("total", promise("sum", totalOut))],
        task_node: { task_id: GREET.id },
      },
    ],
    outputs: [
      bind("squares", promise("fan", "out")),
      bind("total", promise("sum", totalOut)),
      bind("greeting", promise("greet", "greeting")),
    ],
    description: "Node generator fanning out to Python tasks, summed in Python, greeted in Node.",
  };
  wf.id.version = contentVersion(wf);
  return wf;
}

/** One line per event, as it arrives. */
function describeEvent(e) {
  const seq = `#${e.sequence}`.padEnd(5);
  if (e.transition === "execution") {
    const err = e.execution.error ? ` error ${e.execution.error.code}: ${e.execution.error.message}` : "";
    return `${seq} execution ${e.execution.phase.replace("EXECUTION_PHASE_", "")}${err}`;
  }
  const t = e.node;
  const bits = [`${seq} node ${t.node_id.padEnd(10)} ${t.phase.replace("NODE_PHASE_", "").padEnd(15)}`];
  if (t.task_id?.name) bits.push(`task=${t.task_id.name}`);
  if (t.attempt) bits.push(`attempt=${t.attempt}`);
  if (t.worker_id) bits.push(`worker=${t.worker_id}`);
  if (t.dynamic) bits.push(`spec_nodes=${t.dynamic.node_count} depth=${t.dynamic.depth}`);
  if (t.error) bits.push(`error ${t.error.code}: ${t.error.message}`);
  return bits.join(" ");
}

/**
 * Print events until the execution is terminal. WatchExecution ends after the terminal event;
 * when the stream breaks first, resume after the last sequence seen.
 */
async function follow(clients, executionId) {
  let last = "0"; // uint64 as a string
  let phase = null;
  let retries = 0;
  while (!TERMINAL.has(phase)) {
    try {
      await new Promise((resolve, reject) => {
        const stream = clients.executions.WatchExecution({ id: executionId, after_sequence: last }, clients.metadata());
        stream.on("data", (res) => {
          for (const e of res.events) {
            console.log(describeEvent(e));
            last = e.sequence;
            if (e.transition === "execution") phase = e.execution.phase;
          }
        });
        stream.on("error", reject);
        stream.on("end", resolve);
      });
    } catch (err) {
      if (err.code !== Status.UNAVAILABLE || ++retries > 20) throw err;
      await sleep(250);
    }
    if (!TERMINAL.has(phase)) {
      // The stream ended without a terminal event: ask directly before watching again.
      const { execution } = await clients.call("executions", "GetExecution", { id: executionId });
      if (TERMINAL.has(execution.phase)) phase = execution.phase;
    }
  }
}

async function main() {
  const args = parseArgs(process.argv.slice(2), {
    engine: process.env.PLAIT_ENGINE ?? "127.0.0.1:8089",
    n: "5",
    name: "plait",
    wait: "30",
    timeout: "120",
  });
  const clients = connect(args.engine);
  const timer = setTimeout(() => {
    console.error(`client: no result after ${args.timeout}s`);
    process.exit(1);
  }, Number(args.timeout) * 1000);

  // 1. The Python tasks: newest versions, pinned into the workflow (and the check that the
  //    Python worker is up: it registers them).
  const total = await newestTask(clients, PY_TOTAL, Number(args.wait));
  await newestTask(clients, PY_SQUARE, Number(args.wait)); // used by the Node generator
  console.log(`python tasks: ${PY_TOTAL}@${total.id.version}`);

  // 2. Register the Node tasks and the workflow in one request (all or nothing). The Node
  //    worker registers the same task templates when it starts: identical content is a no-op.
  const wf = workflow(total);
  const reg = await clients.call("registry", "Register", { tasks: NODE_TASKS, workflows: [wf] });
  const ids = (list) => list.map((id) => `${id.name}@${id.version}`).join(", ") || "-";
  console.log(`registered: created ${ids(reg.created)}; unchanged ${ids(reg.unchanged)}`);

  // 3. Start it. request_id makes the call idempotent: a retry returns the same execution.
  const { execution } = await clients.call("executions", "CreateExecution", {
    request_id: randomUUID(),
    workflow_id: wf.id, // `target` oneof: workflow_id or launch_plan_id
    inputs: { literals: { n: intLit(BigInt(args.n)), name: strLit(args.name) } },
  });
  const eid = execution.id;
  console.log(`execution ${eid.project}/${eid.domain}/${eid.name}`);

  // 4. Follow its events.
  await follow(clients, eid);

  // 5. The result.
  const final = (await clients.call("executions", "GetExecution", { id: eid })).execution;
  if (final.phase !== "EXECUTION_PHASE_SUCCEEDED") {
    const e = final.error;
    console.error(`execution ${final.phase}: ${e ? `${e.code}: ${e.message} (node ${e.node_id || "-"})` : "no error"}`);
    process.exit(1);
  }
  const data = await clients.call("executions", "GetExecutionData", { id: eid });
  const outputs = mapToPlain(data.outputs);
  for (const [k, v] of Object.entries(outputs)) console.log(`  ${k} = ${JSON.stringify(v)}`);
  console.log(`outputs ${JSON.stringify(outputs)}`);
  clearTimeout(timer);
  clients.close();
}

main().catch((err) => {
  console.error(`client: ${describeError(err)}`);
  process.exit(1);
});
