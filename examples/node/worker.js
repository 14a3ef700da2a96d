#!/usr/bin/env node
// A plait worker in Node.js: serves the queue "node" over WorkerService.Session.
//
//   node worker.js --engine HOST:PORT [--slots 4] [--worker-id ID] [--no-register]
//
// Handlers:
//   greet    greet(name: str, total: int) -> greeting: str          (a plain task)
//   fan_out  fan_out(n: int) -> out: list[int]                       (a dynamic generator)
//            yields n nodes running the PYTHON task node_mix.square and binds their outputs
//            into one list.
// Task types: it declares "javascript-task", "dynamic" and the custom type "format" (a task
// whose `custom` holds { template, uppercase }: see tasks.js), so the engine sends it tasks of
// those types only, and no other worker gets "format" tasks.
//
// The protocol (see protos/plaitidl/service/v1/worker_service.proto and README.md):
//   hello -> welcome -> { assignments (batches) -> results (batches) | heartbeats | cancellations }
// Heartbeats list the running assignments (the engine takes back what they leave out), and
// offloaded inputs (values above the engine's inline limit) are read through DataService.
// This worker declares no task versions in its hello: it serves whatever its queue receives.
// Delivery is at least once: when the stream breaks, running tasks are abandoned (the engine
// retries them once their lease is gone) and the worker reconnects with backoff.

import os from "node:os";
import {
  Status,
  bind,
  connect,
  describeError,
  encode,
  fromStruct,
  intLit,
  listLit,
  parseArgs,
  promise,
  readInt,
  readString,
  resolveLiterals,
  strLit,
} from "./plait.js";
import { FORMAT_TYPE, NODE_QUEUE, NODE_TASKS, NODE_TASK_TYPES, PY_SQUARE } from "./tasks.js";

const VERSION = "0.1.0";
const BACKOFF_START_MS = 200;
const BACKOFF_MAX_MS = 5000;
// Stream status codes another connection cannot fix: stop instead of reconnecting forever.
const FATAL = new Set([Status.INVALID_ARGUMENT, Status.UNAUTHENTICATED, Status.PERMISSION_DENIED, Status.UNIMPLEMENTED]);

const log = (...args) => console.log(`[node-worker ${new Date().toISOString()}]`, ...args);

/** A failure the handler reports as the task's ExecutionError. */
class TaskError extends Error {
  constructor(code, message, { recoverable = false, kind = "KIND_USER" } = {}) {
    super(message);
    this.code = code;
    this.recoverable = recoverable;
    this.kind = kind;
  }
}

// --- handlers ------------------------------------------------------------------------------------
// A handler gets the decoded input LiteralMap's `literals` and a context, and returns either
// { outputs: { name: Literal, ... } } or { dynamic_job_spec: DynamicJobSpec }.

async function greet(inputs) {
  const name = readString(inputs.name, "input name");
  const total = readInt(inputs.total, "input total"); // a BigInt: exact for any int64
  return { outputs: { greeting: strLit(`Hello, ${name}! The sum of squares is ${total}.`) } };
}

// The Python task's template, looked up once per worker and pinned to the version found.
let squareTask = null;

async function findSquare(clients) {
  if (squareTask) return squareTask;
  try {
    // An empty version means "the newest registered version"; the answer carries the full
    // identifier (with its version), which the spec then pins.
    const { task } = await clients.call("registry", "GetTask", { id: { name: PY_SQUARE, version: "" } });
    const { inputs, outputs } = task.interface;
    if (inputs.variables.length !== 1 || outputs.variables.length !== 1) {
      throw new TaskError("BadInterface", `${PY_SQUARE} must take one int and return one int`);
    }
    squareTask = task;
    return task;
  } catch (err) {
    if (err instanceof TaskError) throw err;
    // NOT_FOUND: the Python worker has not registered yet; UNAVAILABLE: engine restarting.
    // Both may pass: let the engine retry the attempt.
    throw new TaskError("LookupFailed", `GetTask ${PY_SQUARE}: ${describeError(err)}`, { recoverable: true });
  }
}

async function fanOut(inputs, { clients }) {
  const n = readInt(inputs.n, "input n");
  if (n < 0n || n > 10_000n) throw new TaskError("ValueError", `n must be in 0..10000, not ${n}`);
  const square = await findSquare(clients);
  const xName = square.interface.inputs.variables[0].name; // "x"
  const outName = square.interface.outputs.variables[0].name; // "o0" (Python's single output)

  // n task nodes. Ids are local to the spec ([A-Za-z0-9_.-]{1,63}, not "start-node"); the
  // engine runs them as "<generator node>/<id>", e.g. "fan/sq3".
  const nodes = [];
  for (let i = 0; i < Number(n); i++) {
    nodes.push({
      id: `sq${i}`,
      metadata: { name: `square ${i}` },
      // A constant input. (A generator input would be promise(START_NODE, "n").)
      inputs: [bind(xName, { literal: intLit(i) })],
      // The registered Python task, pinned to the version GetTask returned. It is not in
      // `tasks` below: the engine resolves registered tasks itself.
      task_node: { task_id: square.id },
    });
  }
  const spec = {
    nodes,
    // One binding per output of the generator (fan_out has one: `out`): a list built from
    // every node's output, in order.
    outputs: [bind("out", { collection: { bindings: nodes.map((node) => promise(node.id, outName)) } })],
    // Templates that need not be registered go here (embedded); the registered square needs
    // no entry. An embedded template takes precedence over a registered one with the same
    // identifier, so give embedded templates their own (content-derived) versions.
    tasks: [],
  };
  return { dynamic_job_spec: spec };
}

// The custom task type "format": its configuration is the template's `custom` (a Struct). The
// engine has no plugin for the type, so it never checked it: check it here, and fail the
// attempt without a retry (naming the field) when it is wrong.
async function format(inputs, { template }) {
  const config = fromStruct(template.custom);
  if (typeof config.template !== "string") {
    throw new TaskError("InvalidTaskConfig", "custom.template: expected a string");
  }
  if (config.uppercase !== undefined && typeof config.uppercase !== "boolean") {
    throw new TaskError("InvalidTaskConfig", "custom.uppercase: expected true or false");
  }
  const values = Object.fromEntries(
    Object.entries(inputs).map(([k, lit]) => [k, lit.scalar?.primitive?.value === "integer" ? readInt(lit, k) : readString(lit, k)]),
  );
  let text = config.template.replace(/\{(\w+)\}/g, (_, name) => {
    if (!(name in values)) throw new TaskError("InvalidTaskConfig", `custom.template: {${name}} names no input`);
    return String(values[name]);
  });
  if (config.uppercase) text = text.toUpperCase();
  const [out] = template.interface.outputs.variables;
  return { outputs: { [out.name]: strLit(text) } };
}

const HANDLERS = { greet, fan_out: fanOut };
// Tasks of a custom type run by their type, whatever their handler says.
const TYPES = { [FORMAT_TYPE]: format };

// --- session -------------------------------------------------------------------------------------

class Worker {
  constructor(clients, { workerId, slots }) {
    this.clients = clients;
    this.workerId = workerId;
    this.slots = slots;
    this.backoff = BACKOFF_START_MS;
    this.stopping = false;
    this.call = null;
  }

  start() {
    this.connect();
  }

  stop() {
    this.stopping = true;
    this.call?.end(); // half-close: the engine ends the session
    this.call?.cancel();
  }

  connect() {
    const call = this.clients.workers.Session(this.clients.metadata());
    this.call = call;
    // Everything below is per session: template keys are only meaningful within the session
    // that sent them, and leases die with the session.
    const session = {
      call,
      id: null,
      templates: new Map(), // template_key -> TaskTemplate
      running: new Map(), // assignment_id -> { attempt, abort: AbortController }
      outbox: [], // TaskResults waiting to be flushed as one ResultBatch
      flushScheduled: false,
      heartbeat: null,
      closed: false,
    };

    // 1. hello: who we are, which queues, how many slots, our language.
    call.write({
      hello: {
        worker_id: this.workerId,
        queues: [NODE_QUEUE],
        slots: this.slots,
        language: "javascript",
        version: VERSION,
        // Only tasks of these types come here (the engine routes by type, like queues).
        task_types: NODE_TASK_TYPES,
      },
    });

    call.on("data", (msg) => {
      // `msg.message` names the member of the SessionResponse oneof that is set.
      switch (msg.message) {
        case "welcome":
          this.onWelcome(session, msg.welcome);
          break;
        case "assignments":
          for (const a of msg.assignments.assignments) this.onAssignment(session, a);
          break;
        case "cancellations":
          this.onCancellations(session, msg.cancellations);
          break;
        default:
          log("ignoring unknown message", msg.message);
      }
    });
    call.on("error", (err) => this.onClosed(session, err));
    call.on("end", () => this.onClosed(session, null));
  }

  onWelcome(session, welcome) {
    session.id = welcome.session_id;
    this.backoff = BACKOFF_START_MS; // a session was accepted: reset the reconnect backoff
    // Durations are { seconds: "<int64 as string>", nanos }.
    const d = welcome.heartbeat_interval;
    const intervalMs = d ? Number(d.seconds) * 1000 + d.nanos / 1e6 : 2000;
    log(`session ${session.id} open (heartbeat every ${intervalMs} ms, worker ${this.workerId})`);
    // 5. heartbeat at the interval, listing what still runs (received and not yet answered):
    //    the engine takes back an assignment a heartbeat leaves out two intervals after it was
    //    sent. Results not flushed yet go first, so none is missing without its answer.
    session.heartbeat = setInterval(() => {
      this.flush(session);
      this.send(session, { heartbeat: { running_assignment_ids: [...session.running.keys()] } });
    }, Math.max(50, intervalMs));
  }

  onAssignment(session, a) {
    // 3. The template comes in full the first time its key is seen in this session, then by
    //    key only: keep it.
    if (a.task_template) session.templates.set(a.template_key, a.task_template);
    const template = session.templates.get(a.template_key);
    if (!template) {
      // Only a broken engine (or a worker that lost its cache) gets here: a system error is
      // retried by the engine on its system budget.
      this.finish(session, a, { error: { code: "UnknownTemplateKey", message: `no template for key ${a.template_key}`, kind: "KIND_SYSTEM", recoverable: true } }, { tracked: false });
      return;
    }
    log(`assignment ${a.assignment_id} attempt ${a.attempt}: ${template.id.name} (${a.task_template ? "template in full" : "template by key"})`);
    const handler = TYPES[template.type] ?? HANDLERS[template.worker?.handler];
    if (!handler) {
      this.finish(session, a, { error: { code: "UnknownHandler", message: `node worker has no handler ${JSON.stringify(template.worker?.handler)} (task ${template.id.name})`, kind: "KIND_USER", recoverable: false } }, { tracked: false });
      return;
    }
    const abort = new AbortController();
    session.running.set(a.assignment_id, { attempt: a.attempt, abort, startedAt: Date.now() });
    // The deadline (a Timestamp, unset = none) is enforced by the engine: past it, the engine
    // fails the attempt with a recoverable "Timeout" and sends a cancellation. Handlers get it
    // (and the abort signal) to stop early if they can.
    const deadline = a.deadline ? new Date(Number(a.deadline.seconds) * 1000 + a.deadline.nanos / 1e6) : null;
    const ctx = { clients: this.clients, signal: abort.signal, deadline, assignment: a, template };
    // Inputs larger than the engine's inline limit arrive offloaded: read them through
    // DataService first, so that handlers only ever see values.
    resolveLiterals(this.clients, a.inputs?.literals)
      .then(
        (inputs) => handler(inputs, ctx),
        (err) => {
          throw new TaskError("DataUnavailable", `reading an offloaded input: ${describeError(err)}`, {
            recoverable: err.code === Status.UNAVAILABLE,
            kind: "KIND_SYSTEM",
          });
        },
      )
      .then(
        (result) => this.finish(session, a, result),
        (err) => this.finish(session, a, { error: toExecutionError(err) }),
      );
  }

  onCancellations(session, c) {
    // 6. The engine no longer wants these (the execution was terminated): stop them; no
    //    result is needed (one sent anyway would be recorded as ignored).
    for (const id of c.assignment_ids) {
      const entry = session.running.get(id);
      if (!entry) continue;
      entry.abort.abort(c.reason);
      session.running.delete(id);
      log(`cancelled ${id}: ${c.reason}`);
    }
  }

  /**
   * Queue the single TaskResult of an assignment, unless the session died or (for a started
   * assignment, `tracked`) it was cancelled meanwhile.
   */
  finish(session, a, result, { tracked = true } = {}) {
    if (session.closed) return;
    let startedAt = null;
    if (tracked) {
      if (!session.running.has(a.assignment_id)) return; // cancelled: no result needed
      startedAt = session.running.get(a.assignment_id).startedAt;
      session.running.delete(a.assignment_id);
    }
    // 4. Exactly one of outputs / dynamic_job_spec / error, with assignment_id and attempt
    //    copied from the assignment. outputs is a LiteralMap: { literals: { name: Literal } }.
    let r = { assignment_id: a.assignment_id, attempt: a.attempt };
    if (result.error) r.error = result.error;
    else if (result.dynamic_job_spec) r.dynamic_job_spec = result.dynamic_job_spec;
    else r.outputs = { literals: result.outputs };
    // When the attempt started here: the engine turns it into schedule-to-start latency.
    // int64 seconds travel as a string.
    if (startedAt !== null) {
      r.started_at = { seconds: String(Math.floor(startedAt / 1000)), nanos: (startedAt % 1000) * 1e6 };
    }
    try {
      // A result that does not encode would make grpc-js cancel the whole stream (and every
      // lease with it): check it here and fail just this task instead.
      encode("plaitidl.service.v1.TaskResult", r);
    } catch (err) {
      const message = `${(session.templates.get(a.template_key)?.id.name ?? a.template_key)} returned a result that does not encode: ${err.message}`;
      r = { assignment_id: a.assignment_id, attempt: a.attempt, error: { code: "BadResult", message, kind: "KIND_USER", recoverable: false } };
    }
    session.outbox.push(r);
    // Batch: every result finished in this turn of the event loop leaves in ONE ResultBatch.
    if (!session.flushScheduled) {
      session.flushScheduled = true;
      setImmediate(() => this.flush(session));
    }
  }

  flush(session) {
    session.flushScheduled = false;
    const results = session.outbox.splice(0);
    if (results.length) this.send(session, { results: { results } });
  }

  send(session, message) {
    if (session.closed) return;
    try {
      session.call.write(message);
    } catch (err) {
      // Writing after the stream failed: onClosed handles the session.
      log("write failed:", describeError(err));
    }
  }

  onClosed(session, err) {
    if (session.closed) return;
    session.closed = true;
    clearInterval(session.heartbeat);
    // Abandon running work: its leases die with the session and the engine retries it
    // elsewhere (at-least-once). Late results must not go to a new session.
    for (const entry of session.running.values()) {
      entry.abort.abort("session closed");
    }
    session.running.clear();
    if (this.stopping) return;
    if (err && FATAL.has(err.code)) {
      log(`session refused: ${describeError(err)}`);
      process.exitCode = 2;
      this.stopping = true;
      this.clients.close();
      return;
    }
    const delay = Math.round(this.backoff * (0.5 + Math.random())); // jitter
    this.backoff = Math.min(this.backoff * 2, BACKOFF_MAX_MS);
    log(`session ended (${err ? describeError(err) : "stream closed"}); reconnecting in ${delay} ms`);
    setTimeout(() => this.connect(), delay);
  }
}

function toExecutionError(err) {
  if (err instanceof TaskError) {
    return { code: err.code, message: err.message, kind: err.kind, recoverable: err.recoverable, details: err.stack ?? "" };
  }
  return {
    code: err?.name ?? "Error",
    message: String(err?.message ?? err),
    kind: "KIND_USER",
    recoverable: false,
    details: String(err?.stack ?? ""),
  };
}

// --- main ----------------------------------------------------------------------------------------

async function registerTasks(clients) {
  // Register what this worker serves (identical content re-registered is a no-op), retrying
  // while the engine is not reachable yet.
  for (let delay = BACKOFF_START_MS; ; delay = Math.min(delay * 2, BACKOFF_MAX_MS)) {
    try {
      const res = await clients.call("registry", "Register", { tasks: NODE_TASKS });
      const names = (ids) => ids.map((id) => `${id.name}@${id.version}`).join(", ") || "-";
      log(`registered: created ${names(res.created)}; unchanged ${names(res.unchanged)}`);
      return;
    } catch (err) {
      if (err.code !== Status.UNAVAILABLE) throw err;
      await new Promise((r) => setTimeout(r, delay));
    }
  }
}

async function main() {
  const args = parseArgs(process.argv.slice(2), {
    engine: process.env.PLAIT_ENGINE ?? "127.0.0.1:8089",
    slots: "4",
    worker_id: `node-${os.hostname()}-${process.pid}`,
    no_register: false,
  });
  const slots = Number(args.slots);
  if (!Number.isInteger(slots) || slots < 1) throw new Error("--slots must be an integer >= 1");
  const clients = connect(args.engine);
  if (!args.no_register) await registerTasks(clients);
  const worker = new Worker(clients, { workerId: args.worker_id, slots });
  worker.start();
  const shutdown = (sig) => {
    log(`${sig}: stopping`);
    worker.stop();
    clients.close();
    setTimeout(() => process.exit(0), 200).unref();
  };
  process.on("SIGTERM", () => shutdown("SIGTERM"));
  process.on("SIGINT", () => shutdown("SIGINT"));
}

main().catch((err) => {
  console.error(`node worker: ${describeError(err)}`);
  process.exit(1);
});
