// One node: state, error with its traceback, attempts with timings, inputs and outputs by type,
// logs, cache status, and the dynamic spec it produced.
import { toJsonString } from "@bufbuild/protobuf";
import { useEffect, useState } from "preact/hooks";
import { errorText, executions, isAbort, registry } from "../api";
import {
  between,
  cacheText,
  count,
  dateOf,
  executionPath,
  idText,
  levelPath,
  nodePhaseName,
  parentOf,
  phaseClass,
  spanText,
  TERMINAL_EXECUTION,
  timeText,
} from "../format";
import { DynamicJobSpecSchema } from "../gen/plaitidl/core/v1/dynamic_job_pb";
import type { ExecutionEvent, NodeTransition } from "../gen/plaitidl/core/v1/events_pb";
import { NodePhase } from "../gen/plaitidl/core/v1/execution_pb";
import type { ExecutionIdentifier } from "../gen/plaitidl/core/v1/identifier_pb";
import type { TypedInterface } from "../gen/plaitidl/core/v1/interface_pb";
import {
  type GetDynamicSpecResponse,
  type GetNodeExecutionDataResponse,
  type GetNodeGraphResponse,
  type LogLine,
  LogStream,
} from "../gen/plaitidl/service/v1/execution_service_pb";
import { LiteralMapView } from "../literal";
import { linkClick, type Route } from "../router";
import { useExecutionId, useLiveExecution } from "./Execution";

const MAX_LOG_LINES = 5000;

interface Attempt {
  attempt: number;
  dispatched?: ExecutionEvent;
  started?: NodeTransition;
  ended?: ExecutionEvent;
  reasons: string[];
}

function attemptsOf(events: ExecutionEvent[]): Attempt[] {
  const byNumber = new Map<number, Attempt>();
  for (const ev of events) {
    if (ev.transition.case !== "node") continue;
    const t = ev.transition.value;
    if (t.attempt === 0) continue;
    const a = byNumber.get(t.attempt) ?? { attempt: t.attempt, reasons: [] };
    byNumber.set(t.attempt, a);
    if (t.phase === NodePhase.RUNNING && !a.dispatched) a.dispatched = ev;
    else if (t.phase === NodePhase.QUEUED && t.reason) a.reasons.push(t.reason);
    else if (t.phase !== NodePhase.RUNNING && t.phase !== NodePhase.QUEUED) {
      a.ended = ev;
      if (t.startedAt) a.started = t;
    }
  }
  return [...byNumber.values()].sort((x, y) => x.attempt - y.attempt);
}

function Attempts({ events }: { events: ExecutionEvent[] }) {
  const attempts = attemptsOf(events);
  if (attempts.length === 0)
    return <p class="muted">No attempts (not a task, or not dispatched yet).</p>;
  return (
    <table class="list attempts">
      <thead>
        <tr>
          <th>attempt</th>
          <th>dispatched</th>
          <th>waited</th>
          <th>ran</th>
          <th>outcome</th>
          <th>worker</th>
        </tr>
      </thead>
      <tbody>
        {attempts.map((a) => {
          const end = a.ended?.transition.case === "node" ? a.ended.transition.value : undefined;
          const started = a.started?.startedAt;
          const from = started ?? a.dispatched?.occurredAt;
          return (
            <tr key={a.attempt} data-attempt={a.attempt}>
              <td>{a.attempt}</td>
              <td class="muted">{timeText(a.dispatched?.occurredAt)}</td>
              <td class="muted">
                {started ? spanText(between(a.dispatched?.occurredAt, started)) : ""}
              </td>
              <td>{a.ended ? spanText(between(from, a.ended.occurredAt)) : "running"}</td>
              <td>
                {end && (
                  <span class={`badge ${phaseClass(end.phase)}`}>{nodePhaseName(end.phase)}</span>
                )}{" "}
                {end?.error?.code && `${end.error.code}: ${end.error.message}`}
                {a.reasons.length > 0 && <div class="muted">{a.reasons[a.reasons.length - 1]}</div>}
              </td>
              <td class="muted mono">{end?.workerId}</td>
            </tr>
          );
        })}
      </tbody>
    </table>
  );
}

function Logs({
  eid,
  nodeId,
  follow,
}: {
  eid: ExecutionIdentifier;
  nodeId: string;
  follow: boolean;
}) {
  const [lines, setLines] = useState<LogLine[]>([]);
  const [dropped, setDropped] = useState(0);
  const [error, setError] = useState("");
  const [ended, setEnded] = useState(false);
  useEffect(() => {
    const ctrl = new AbortController();
    setLines([]);
    setEnded(false);
    const run = async () => {
      try {
        for await (const res of executions.streamLogs(
          { id: eid, nodeId, follow },
          { signal: ctrl.signal },
        )) {
          setLines((old) => {
            const all = [...old, ...res.lines];
            if (all.length > MAX_LOG_LINES) setDropped((d) => d + all.length - MAX_LOG_LINES);
            return all.slice(-MAX_LOG_LINES);
          });
        }
        setEnded(true);
      } catch (err) {
        if (!isAbort(err)) setError(errorText(err));
      }
    };
    void run();
    return () => ctrl.abort();
  }, [nodeId, eid, follow]);
  return (
    <div class="logs-box">
      {error && <p class="error-text">{error}</p>}
      {dropped > 0 && <p class="muted">{count(dropped)} earlier lines not shown</p>}
      {lines.length === 0 ? (
        <p class="muted">{ended ? "No output was captured." : "Waiting for output…"}</p>
      ) : (
        <pre class="logs" data-logs>
          {lines.map((l, i) => (
            // biome-ignore lint/suspicious/noArrayIndexKey: lines arrive in order and stay
            <div key={i} class={`log-${LogStream[l.stream]?.toLowerCase()}`}>
              <span class="muted">
                #{l.attempt} {dateOf(l.time)?.toISOString().slice(11, 23)}{" "}
              </span>
              {l.text}
            </div>
          ))}
        </pre>
      )}
    </div>
  );
}

function DynamicSpec({ eid, nodeId }: { eid: ExecutionIdentifier; nodeId: string }) {
  const [spec, setSpec] = useState<GetDynamicSpecResponse | undefined>();
  const [show, setShow] = useState(false);
  const [error, setError] = useState("");
  useEffect(() => {
    executions
      .getDynamicSpec({ id: { nodeId, executionId: eid } })
      .then(setSpec, (err) => setError(errorText(err)));
  }, [nodeId, eid]);
  if (error) return <p class="muted">{error}</p>;
  if (!spec?.spec) return <p class="muted">Loading the spec…</p>;
  const s = spec.spec;
  const json = show ? toJsonString(DynamicJobSpecSchema, s, { prettySpaces: 2 }) : "";
  return (
    <div data-dynamic-spec>
      <p>
        {count(s.nodes.length)} nodes, {s.tasks.length} task templates, {s.subworkflows.length}{" "}
        subworkflows
        {s.minSuccesses ? `, at least ${s.minSuccesses} must succeed` : ""}; generator{" "}
        {idText(spec.generator?.id)}.
      </p>
      <button type="button" onClick={() => setShow(!show)}>
        {show ? "Hide" : "Show"} the spec as JSON
      </button>
      {show && (
        <pre class="json">{json.length > 400_000 ? `${json.slice(0, 400_000)}\n…` : json}</pre>
      )}
    </div>
  );
}

export function NodePage({ route, parts }: { route: Route; parts: string[] }) {
  const eid = useExecutionId(parts);
  const nodeId = route.query.get("id") ?? "";
  const { execution, version } = useLiveExecution(eid);
  const [graph, setGraph] = useState<GetNodeGraphResponse | undefined>();
  const [data, setData] = useState<GetNodeExecutionDataResponse | undefined>();
  const [iface, setIface] = useState<TypedInterface | undefined>();
  const [events, setEvents] = useState<ExecutionEvent[]>([]);
  const [error, setError] = useState("");

  // The node's record (the `parent` of its inside) and its data, again after each change.
  // biome-ignore lint/correctness/useExhaustiveDependencies: again after each change
  useEffect(() => {
    const ctrl = new AbortController();
    executions.getNodeGraph({ id: eid, parentNodeId: nodeId }, { signal: ctrl.signal }).then(
      (g) => {
        setGraph(g);
        setError("");
      },
      (err) => {
        if (!isAbort(err)) setError(errorText(err));
      },
    );
    executions
      .getNodeExecutionData({ id: { nodeId, executionId: eid } }, { signal: ctrl.signal })
      .then(setData, () => undefined);
    return () => ctrl.abort();
  }, [nodeId, eid, version]);

  const node = graph?.parent;
  const taskKey = node?.taskId ? idText(node.taskId) : "";
  // biome-ignore lint/correctness/useExhaustiveDependencies: the key names the task
  useEffect(() => {
    if (node?.taskId)
      registry.getTask({ id: node.taskId }).then(
        (r) => setIface(r.task?.interface),
        () => undefined,
      );
  }, [taskKey]);

  // Its transitions: attempts with their timings, live until the execution ends.
  const live = execution ? !TERMINAL_EXECUTION.has(execution.phase) : false;
  useEffect(() => {
    const ctrl = new AbortController();
    setEvents([]);
    const run = async () => {
      try {
        for await (const res of executions.watchExecution(
          { id: eid, nodeId },
          { signal: ctrl.signal },
        )) {
          setEvents((old) => [...old, ...res.events]);
        }
      } catch (err) {
        if (!isAbort(err)) setError(errorText(err));
      }
    };
    void run();
    return () => ctrl.abort();
  }, [nodeId, eid]);

  if (error && !node) return <p class="error-text">{error}</p>;
  if (!node) return <p class="muted">Loading node {nodeId}…</p>;
  const exHref = executionPath(eid);
  const levelHref = levelPath(eid, parentOf(nodeId));
  const insideHref = levelPath(eid, nodeId);
  const hasInside = (graph?.nodes.length ?? 0) > 0;
  return (
    <section class="node-page" data-node-page={nodeId}>
      <nav class="crumbs">
        <a href={exHref} onClick={(e) => linkClick(e, exHref)}>
          {eid.name}
        </a>{" "}
        ›{" "}
        <a href={levelHref} onClick={(e) => linkClick(e, levelHref)}>
          {parentOf(nodeId) || "top"}
        </a>{" "}
        › <strong class="mono">{nodeId}</strong>
      </nav>
      <h2>
        {node.name}{" "}
        <span
          class={`badge big ${phaseClass(node.phase)}`}
          data-node-phase={nodePhaseName(node.phase)}
        >
          {nodePhaseName(node.phase)}
        </span>
      </h2>
      <div class="facts">
        {node.taskId && <span>task {idText(node.taskId)}</span>}
        <span>attempt {node.attempt}</span>
        {cacheText(node.cacheStatus) && <span data-cache>{cacheText(node.cacheStatus)}</span>}
        <span>created {timeText(node.createdAt)}</span>
        <span>
          {node.phase === NodePhase.RUNNING ? "running for" : "took"}{" "}
          {spanText(between(node.createdAt, node.updatedAt))}
        </span>
        {node.detail && <span>{node.detail}</span>}
        {hasInside && (
          <a href={insideHref} onClick={(e) => linkClick(e, insideHref)}>
            open its inside ({count(graph?.nodeCount ?? 0)} nodes)
          </a>
        )}
      </div>
      {node.error?.message && (
        <div class="error-box" data-error>
          <h3>Error</h3>
          <p class="error-text">
            {node.error.code}: {node.error.message}
          </p>
          {node.error.details && (
            <pre class="traceback" data-traceback>
              {node.error.details}
            </pre>
          )}
        </div>
      )}
      <h3>Attempts</h3>
      <Attempts events={events} />
      <div class="data">
        <div>
          <h3>Inputs</h3>
          <LiteralMapView map={data?.inputs} vars={iface?.inputs?.variables} />
        </div>
        <div>
          <h3>Outputs</h3>
          <LiteralMapView map={data?.outputs} vars={iface?.outputs?.variables} />
        </div>
      </div>
      {node.isDynamic && (
        <>
          <h3>Dynamic spec</h3>
          <DynamicSpec eid={eid} nodeId={nodeId} />
        </>
      )}
      <h3>Logs</h3>
      {execution && <Logs key={live ? "live" : "done"} eid={eid} nodeId={nodeId} follow={live} />}
    </section>
  );
}
