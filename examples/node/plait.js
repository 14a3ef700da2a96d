// Shared helpers for the Node.js client and worker: loading the plait protos, gRPC clients,
// and small builders/readers for the proto messages. Nothing here comes from the Python SDK:
// the only thing the two languages share is protos/plaitidl/**/*.proto.
//
// How messages look in JavaScript (the options passed to @grpc/proto-loader below):
//  - keepCase: field names are exactly as in the .proto files (`node_id`, not `nodeId`).
//  - longs: String: every int64/uint64 (Primitive.integer, Duration.seconds,
//    ExecutionEvent.sequence, ...) is decoded as a decimal string, so values beyond 2^53 stay
//    exact. When encoding, pass a string (or a BigInt turned into a string), never a float.
//  - enums: String: enums are their names ("NODE_PHASE_SUCCEEDED"); names are also accepted
//    when encoding.
//  - defaults: true: unset scalars decode as their zero value, unset messages as null.
//  - oneofs: true: a decoded message carries the name of the set member of each oneof in a
//    virtual property named after the oneof (`literal.value === "scalar"`,
//    `response.message === "assignments"`). When encoding, set exactly ONE member of a oneof:
//    setting two silently encodes both and the receiver keeps the last one.

import { createHash } from "node:crypto";
import { fileURLToPath } from "node:url";
import path from "node:path";
import grpc from "@grpc/grpc-js";
import protoLoader from "@grpc/proto-loader";

/** Where the .proto files live: ../../protos from this file, or $PLAIT_PROTOS. */
export const PROTO_ROOT =
  process.env.PLAIT_PROTOS ?? path.resolve(fileURLToPath(new URL("../../protos", import.meta.url)));

const LOADER_OPTIONS = {
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
  includeDirs: [PROTO_ROOT],
};

const definition = protoLoader.loadSync(
  [
    "plaitidl/service/v1/registry_service.proto",
    "plaitidl/service/v1/execution_service.proto",
    "plaitidl/service/v1/worker_service.proto",
    "plaitidl/service/v1/data_service.proto",
  ],
  LOADER_OPTIONS,
);
const pkg = grpc.loadPackageDefinition(definition);
const services = pkg.plaitidl.service.v1;

// Large specs and literal maps: match the engine's default message limit (64 MiB).
const CHANNEL_OPTIONS = {
  "grpc.max_receive_message_length": 64 * 1024 * 1024,
  "grpc.max_send_message_length": 64 * 1024 * 1024,
};

/**
 * gRPC clients for the three services over one channel, plus `call(service, method, request)`,
 * a promisified unary call. With a token (option or $PLAIT_TOKEN) every call carries
 * `authorization: Bearer <token>`.
 */
export function connect(address, { token = process.env.PLAIT_TOKEN } = {}) {
  const creds = grpc.credentials.createInsecure();
  const registry = new services.RegistryService(address, creds, CHANNEL_OPTIONS);
  const opts = { ...CHANNEL_OPTIONS, channelOverride: registry.getChannel() };
  const clients = {
    registry,
    executions: new services.ExecutionService(address, creds, opts),
    workers: new services.WorkerService(address, creds, opts),
    data: new services.DataService(address, creds, opts),
    /** Metadata for one call (fresh each time: grpc-js may mutate it). */
    metadata() {
      const md = new grpc.Metadata();
      if (token) md.set("authorization", `Bearer ${token}`);
      return md;
    },
    /** `await clients.call("registry", "GetTask", { id })`; rejects with the gRPC error. */
    call(service, method, request, { deadlineSeconds = 30 } = {}) {
      return new Promise((resolve, reject) => {
        const deadline = new Date(Date.now() + deadlineSeconds * 1000);
        clients[service][method](request, clients.metadata(), { deadline }, (err, response) =>
          err ? reject(err) : resolve(response),
        );
      });
    },
    close() {
      registry.close();
    },
  };
  return clients;
}

export const { status: Status } = grpc;

/**
 * Encode `message` as the proto type `typeName` (e.g. "plaitidl.service.v1.TaskResult") and
 * return the bytes; throws when the object does not fit the type. Useful before writing to a
 * stream: grpc-js cancels the WHOLE call (status INTERNAL) when one message fails to serialize.
 */
export function encode(typeName, message) {
  return definition[typeName].serialize(message);
}

/** Decode `bytes` (a Buffer) as the proto type `typeName`, with the options above. */
export function decode(typeName, bytes) {
  return definition[typeName].deserialize(bytes);
}

// --- offloaded values ----------------------------------------------------------------------------
// A value larger than the engine's inline limit arrives as an OffloadedLiteral: a plait-data://
// URI, the size and SHA-256 of the serialized Literal, and its type. Read it in chunks with
// DataService.ReadData (resuming at the last byte received when the stream breaks) and check it.

const READ_RETRIES = 5;

/** The bytes behind a data URI, read in chunks from `offset` on; rejects with the gRPC error. */
function readFrom(clients, uri, offset, onChunk) {
  return new Promise((resolve, reject) => {
    const call = clients.data.ReadData({ uri, offset: String(offset) }, clients.metadata());
    call.on("data", (msg) => onChunk(msg));
    call.on("error", reject);
    call.on("end", resolve);
  });
}

/** Read the serialized Literal behind an OffloadedLiteral, checked against its size and SHA-256. */
export async function readOffloaded(clients, offloaded) {
  const chunks = [];
  const hash = createHash("sha256");
  let received = 0;
  let retries = 0;
  let header = null;
  for (;;) {
    const before = received;
    try {
      await readFrom(clients, offloaded.uri, received, (msg) => {
        header ??= msg;
        chunks.push(msg.chunk);
        hash.update(msg.chunk);
        received += msg.chunk.length;
      });
      break;
    } catch (err) {
      retries = received > before ? 0 : retries + 1;
      if (err.code !== Status.UNAVAILABLE || retries > READ_RETRIES) throw err;
      await new Promise((r) => setTimeout(r, 100 * 2 ** retries));
    }
  }
  const sha = offloaded.sha256 || header?.sha256;
  const size = Number(offloaded.size_bytes || header?.size_bytes || 0);
  const digest = hash.digest("hex");
  if (digest !== sha || received !== size) {
    throw new Error(`data at ${offloaded.uri} does not match its reference (${received} bytes, sha256 ${digest})`);
  }
  return decode("plaitidl.core.v1.Literal", Buffer.concat(chunks));
}

/** A LiteralMap's `literals` with every offloaded literal read (the others as they are). */
export async function resolveLiterals(clients, literals) {
  const out = {};
  for (const [name, lit] of Object.entries(literals ?? {})) {
    out[name] = lit?.value === "offloaded" ? await readOffloaded(clients, lit.offloaded) : lit;
  }
  return out;
}

/** "CODE: message" for a gRPC error, with BadRequest field violations when the engine sent some. */
export function describeError(err) {
  if (err?.code === undefined) return String(err?.stack ?? err);
  const name = Object.keys(grpc.status).find((k) => grpc.status[k] === err.code) ?? err.code;
  return `${name}: ${err.details || err.message}`;
}

// --- types ---------------------------------------------------------------------------------------

export const INT = { simple: "SIMPLE_TYPE_INTEGER" };
export const STR = { simple: "SIMPLE_TYPE_STRING" };
export const listOf = (t) => ({ collection_type: t });

/** A VariableMap from [[name, type], ...] (declaration order matters: keep it a list). */
export const vars = (pairs) => ({ variables: pairs.map(([name, type]) => ({ name, type })) });

/** A TypedInterface. */
export const iface = (inputs, outputs) => ({ inputs: vars(inputs), outputs: vars(outputs) });

/** Content version: a digest of the template without its version, like the Python SDK does. */
export function contentVersion(template) {
  const copy = structuredClone(template);
  copy.id.version = "";
  return createHash("sha256").update(JSON.stringify(copy)).digest("hex").slice(0, 16);
}

// --- google.protobuf.Struct (TaskTemplate.custom) ---------------------------------------------------
// A Struct is { fields: { key: Value } }; a Value sets exactly one of its `kind` members. Careful:
// protobufjs defines Google's well-known types itself, with camelCase field names whatever
// `keepCase` says: nullValue, numberValue, stringValue, boolValue, structValue, listValue.

/** Plain JSON-able JavaScript as a Struct Value. */
export function toValue(v) {
  if (v === null || v === undefined) return { nullValue: "NULL_VALUE" };
  if (typeof v === "number") return { numberValue: v };
  if (typeof v === "string") return { stringValue: v };
  if (typeof v === "boolean") return { boolValue: v };
  if (Array.isArray(v)) return { listValue: { values: v.map(toValue) } };
  return { structValue: toStruct(v) };
}

/** A plain object as a Struct (a task type's configuration, for TaskTemplate.custom). */
export const toStruct = (obj) => ({ fields: Object.fromEntries(Object.entries(obj).map(([k, v]) => [k, toValue(v)])) });

/** A decoded Struct Value as plain JavaScript. */
export function fromValue(v) {
  switch (v?.kind) {
    case "numberValue":
    case "stringValue":
    case "boolValue":
      return v[v.kind];
    case "structValue":
      return fromStruct(v.structValue);
    case "listValue":
      return (v.listValue.values ?? []).map(fromValue);
    default:
      return null;
  }
}

/** A decoded Struct (e.g. TaskTemplate.custom) as a plain object; {} when unset. */
export const fromStruct = (struct) => Object.fromEntries(Object.entries(struct?.fields ?? {}).map(([k, v]) => [k, fromValue(v)]));

// --- literals ------------------------------------------------------------------------------------

/** Literal for an int64. Accepts a number (must be a safe integer), a bigint or a digit string. */
export function intLit(v) {
  if (typeof v === "number" && !Number.isSafeInteger(v)) throw new RangeError(`not a safe integer: ${v}`);
  return { scalar: { primitive: { integer: BigInt(v).toString() } } };
}
export const strLit = (s) => ({ scalar: { primitive: { string_value: String(s) } } });
export const listLit = (literals) => ({ collection: { literals } });

/** Read an integer literal as a BigInt (int64 arrives as a string: keep it exact). */
export function readInt(lit, what = "value") {
  const p = lit?.scalar?.primitive;
  if (lit?.value !== "scalar" || lit.scalar.value !== "primitive" || p.value !== "integer") {
    throw new TypeError(`${what}: expected an integer literal, got ${JSON.stringify(lit)}`);
  }
  return BigInt(p.integer);
}

export function readString(lit, what = "value") {
  const p = lit?.scalar?.primitive;
  if (lit?.value !== "scalar" || lit.scalar.value !== "primitive" || p.value !== "string_value") {
    throw new TypeError(`${what}: expected a string literal, got ${JSON.stringify(lit)}`);
  }
  return p.string_value;
}

/**
 * A decoded Literal as plain JSON-able JavaScript, for display: integers become numbers when
 * they are safe integers and decimal strings otherwise (never a rounded float).
 */
export function toPlain(lit) {
  switch (lit?.value) {
    case "scalar": {
      const s = lit.scalar;
      switch (s.value) {
        case "primitive": {
          const p = s.primitive;
          if (p.value === "integer") {
            const b = BigInt(p.integer);
            return b >= BigInt(Number.MIN_SAFE_INTEGER) && b <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(b) : p.integer;
          }
          if (p.value === "datetime" || p.value === "duration") {
            return { seconds: p[p.value].seconds, nanos: p[p.value].nanos };
          }
          return p[p.value];
        }
        case "none_value":
          return null;
        case "binary":
          return { binary: Buffer.from(s.binary.value).toString("base64") };
        case "blob":
          return { blob: s.blob.uri };
        case "union":
          return toPlain(s.union.value);
        default:
          return { [s.value]: s[s.value] };
      }
    }
    case "collection":
      return lit.collection.literals.map(toPlain);
    case "map":
      return Object.fromEntries(Object.entries(lit.map.literals).map(([k, v]) => [k, toPlain(v)]));
    case "record":
      return Object.fromEntries(lit.record.fields.map((f) => [f.name, toPlain(f.value)]));
    case "offloaded":
      return { offloaded: lit.offloaded.uri };
    default:
      return undefined;
  }
}

/** A LiteralMap as a plain object (keys sorted: a proto map has no order). */
export function mapToPlain(literalMap) {
  const entries = Object.entries(literalMap?.literals ?? {}).sort(([a], [b]) => a.localeCompare(b));
  return Object.fromEntries(entries.map(([k, v]) => [k, toPlain(v)]));
}

// --- bindings ------------------------------------------------------------------------------------

/** The reserved node id whose "outputs" are the enclosing workflow's (or generator's) inputs. */
export const START_NODE = "start-node";

/** BindingData reading output `varName` of node `nodeId`. */
export const promise = (nodeId, varName) => ({ promise: { node_id: nodeId, var: varName } });
/** Binding of variable `varName`. */
export const bind = (varName, bindingData) => ({ var: varName, binding: bindingData });

/** Parse `--key value` / `--flag` arguments into an object. */
export function parseArgs(argv, defaults) {
  const out = { ...defaults };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith("--")) throw new Error(`unexpected argument ${a}`);
    const key = a.slice(2).replaceAll("-", "_");
    if (!(key in defaults)) throw new Error(`unknown option ${a}`);
    if (typeof defaults[key] === "boolean") out[key] = true;
    else if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
    else out[key] = argv[++i];
  }
  return out;
}
