// How values of the contract are shown: phases, times, durations, identifiers, paths.
import { type Duration, type Timestamp, timestampDate } from "@bufbuild/protobuf/wkt";
import { CacheStatus, ExecutionPhase, NodePhase } from "./gen/plaitidl/core/v1/execution_pb";
import type { ExecutionIdentifier, Identifier } from "./gen/plaitidl/core/v1/identifier_pb";

export function executionPhaseName(p: ExecutionPhase): string {
  return (ExecutionPhase[p] ?? "UNKNOWN").toLowerCase();
}

/** Node phase names as shown (and as CSS classes: `phase-succeeded`...). */
export function nodePhaseName(p: NodePhase): string {
  if (p === NodePhase.UNSPECIFIED) return "not started";
  if (p === NodePhase.DYNAMIC_RUNNING) return "dynamic running";
  return (NodePhase[p] ?? "UNKNOWN").toLowerCase();
}

export function phaseClass(p: NodePhase | undefined): string {
  if (p === undefined || p === NodePhase.UNSPECIFIED) return "phase-pending";
  return `phase-${NodePhase[p].toLowerCase().replace("_", "-")}`;
}

export function executionPhaseClass(p: ExecutionPhase): string {
  return `xphase-${(ExecutionPhase[p] ?? "unknown").toLowerCase()}`;
}

export const TERMINAL_EXECUTION = new Set([
  ExecutionPhase.SUCCEEDED,
  ExecutionPhase.FAILED,
  ExecutionPhase.ABORTED,
]);

export const NODE_PHASES_SHOWN: NodePhase[] = [
  NodePhase.SUCCEEDED,
  NodePhase.RUNNING,
  NodePhase.DYNAMIC_RUNNING,
  NodePhase.QUEUED,
  NodePhase.RETRYING,
  NodePhase.FAILED,
  NodePhase.ABORTED,
  NodePhase.SKIPPED,
];

export function cacheText(c: CacheStatus): string {
  switch (c) {
    case CacheStatus.HIT:
      return "cache hit";
    case CacheStatus.MISS:
      return "cache miss";
    case CacheStatus.POPULATED:
      return "cached after run";
    case CacheStatus.WAITING:
      return "waiting for the cache";
    case CacheStatus.DISABLED:
      return "cache off";
    default:
      return "";
  }
}

export function dateOf(ts: Timestamp | undefined): Date | undefined {
  return ts && (ts.seconds !== 0n || ts.nanos !== 0) ? timestampDate(ts) : undefined;
}

export function timeText(ts: Timestamp | undefined): string {
  const d = dateOf(ts);
  if (!d) return "";
  const pad = (n: number) => String(n).padStart(2, "0");
  return (
    `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`
  );
}

/** A span in seconds as people read it: 850 ms, 12.3 s, 4 m 05 s, 2 h 01 m. */
export function spanText(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return "";
  if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
  if (seconds < 60) return `${seconds.toFixed(seconds < 10 ? 2 : 1)} s`;
  const m = Math.floor(seconds / 60);
  if (m < 60) return `${m} m ${String(Math.round(seconds % 60)).padStart(2, "0")} s`;
  return `${Math.floor(m / 60)} h ${String(m % 60).padStart(2, "0")} m`;
}

export function between(a: Timestamp | undefined, b: Timestamp | undefined): number {
  const x = dateOf(a);
  const y = dateOf(b);
  return x && y ? (y.getTime() - x.getTime()) / 1000 : Number.NaN;
}

export function durationText(d: Duration | undefined): string {
  if (!d) return "";
  return spanText(Number(d.seconds) + d.nanos / 1e9);
}

export function idText(id: Identifier | undefined): string {
  if (!id) return "";
  return `${id.project}/${id.domain}/${id.name}${id.version ? `@${id.version}` : ""}`;
}

export function count(n: number | bigint): string {
  return Number(n).toLocaleString("en-US");
}

export function executionPath(id: ExecutionIdentifier): string {
  const p = (s: string) => encodeURIComponent(s || "-");
  return `/executions/${p(id.project)}/${p(id.domain)}/${p(id.name)}`;
}

export function nodePath(id: ExecutionIdentifier, nodeId: string): string {
  return `${executionPath(id)}/node?id=${encodeURIComponent(nodeId)}`;
}

export function levelPath(id: ExecutionIdentifier, level: string): string {
  return level ? `${executionPath(id)}?level=${encodeURIComponent(level)}` : executionPath(id);
}

/** The local id (last part) of a node path. */
export function localId(path: string): string {
  return path.slice(path.lastIndexOf("/") + 1);
}

export function parentOf(path: string): string {
  const i = path.lastIndexOf("/");
  return i < 0 ? "" : path.slice(0, i);
}
