// One execution: its state, live graph (a level at a time), failures, inputs and outputs.
import { create } from "@bufbuild/protobuf";
import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import { consoleSettings, errorText, executions, isAbort, registry } from "../api";
import {
  between,
  count,
  executionPhaseClass,
  executionPhaseName,
  idText,
  levelPath,
  nodePath,
  parentOf,
  spanText,
  TERMINAL_EXECUTION,
  timeText,
} from "../format";
import { ExecutionPhase, NodePhase } from "../gen/plaitidl/core/v1/execution_pb";
import {
  type ExecutionIdentifier,
  ExecutionIdentifierSchema,
} from "../gen/plaitidl/core/v1/identifier_pb";
import type { Variable } from "../gen/plaitidl/core/v1/interface_pb";
import type {
  Execution,
  GetExecutionDataResponse,
  NodeExecution,
} from "../gen/plaitidl/service/v1/execution_service_pb";
import { Breadcrumbs, GraphView } from "../graph/GraphView";
import { LiteralMapView } from "../literal";
import { linkClick, navigate, type Route } from "../router";
import { Progress } from "./Executions";

export function executionIdOf(parts: string[]): ExecutionIdentifier {
  const [project, domain, name] = parts.map((p) => decodeURIComponent(p));
  return create(ExecutionIdentifierSchema, {
    project: project === "-" ? "" : project,
    domain: domain === "-" ? "" : domain,
    name,
  });
}

/** The execution a page's path names, the same object while the path stays. */
export function useExecutionId(parts: string[]): ExecutionIdentifier {
  const key = parts.join("/");
  return useMemo(() => executionIdOf(key.split("/")), [key]);
}

/** The execution, kept current by `WatchExecution`; `version` counts the changes seen. */
export function useLiveExecution(eid: ExecutionIdentifier) {
  const [execution, setExecution] = useState<Execution | undefined>();
  const [version, setVersion] = useState(0);
  // The levels (parent paths) that changed since the graph last looked; "*" for everything.
  const dirty = useRef(new Set<string>());
  const [error, setError] = useState("");
  useEffect(() => {
    const ctrl = new AbortController();
    setExecution(undefined);
    const run = async () => {
      try {
        const first = (await executions.getExecution({ id: eid }, { signal: ctrl.signal }))
          .execution;
        setExecution(first);
        if (!first || TERMINAL_EXECUTION.has(first.phase)) return;
        const stream = executions.watchExecution(
          { id: eid, afterSequence: first.lastSequence },
          { signal: ctrl.signal },
        );
        for await (const batch of stream) {
          setExecution((old) => {
            if (!old) return old;
            const updated = { ...old, nodes: batch.nodes ?? old.nodes };
            for (const ev of batch.events) {
              if (ev.transition.case === "execution") {
                updated.phase = ev.transition.value.phase;
                updated.error = ev.transition.value.error ?? updated.error;
                dirty.current.add("*");
              } else if (ev.transition.case === "node") {
                const t = ev.transition.value;
                dirty.current.add(t.parentNodeId || parentOf(t.nodeId));
              }
              updated.lastSequence = ev.sequence;
            }
            return updated;
          });
          setVersion((v) => v + 1);
        }
        const last = (await executions.getExecution({ id: eid }, { signal: ctrl.signal }))
          .execution;
        setExecution(last);
        dirty.current.add("*");
        setVersion((v) => v + 1);
      } catch (err) {
        if (!isAbort(err)) setError(errorText(err));
      }
    };
    void run();
    return () => ctrl.abort();
  }, [eid]);
  return { execution, version, dirty, error, setExecution };
}

function Failures({ eid, failed }: { eid: ExecutionIdentifier; failed: number }) {
  const [rows, setRows] = useState<NodeExecution[]>([]);
  // biome-ignore lint/correctness/useExhaustiveDependencies: again after each change
  useEffect(() => {
    const ctrl = new AbortController();
    executions
      .listNodeExecutions(
        { id: eid, phases: [NodePhase.FAILED], pageSize: 20 },
        { signal: ctrl.signal },
      )
      .then(
        (res) => setRows(res.nodeExecutions),
        () => undefined,
      );
    return () => ctrl.abort();
  }, [eid, failed]);
  if (rows.length === 0) return null;
  return (
    <div class="failures">
      <h3>Failed nodes</h3>
      <ul>
        {rows.map((n) => {
          const id = n.id?.nodeId ?? "";
          const href = nodePath(eid, id);
          return (
            <li key={id}>
              <a href={href} onClick={(e) => linkClick(e, href)} class="mono" data-failed-node={id}>
                {id}
              </a>{" "}
              {n.name} — {n.error?.code}: {n.error?.message}
            </li>
          );
        })}
      </ul>
    </div>
  );
}

function DataSection({ eid, execution }: { eid: ExecutionIdentifier; execution: Execution }) {
  const [data, setData] = useState<GetExecutionDataResponse | undefined>();
  const [vars, setVars] = useState<{ inputs: Variable[]; outputs: Variable[] }>({
    inputs: [],
    outputs: [],
  });
  const terminal = TERMINAL_EXECUTION.has(execution.phase);
  // biome-ignore lint/correctness/useExhaustiveDependencies: again when it ends
  useEffect(() => {
    executions.getExecutionData({ id: eid }).then(setData, () => undefined);
    if (execution.workflowId) {
      registry.getWorkflow({ id: execution.workflowId }).then(
        (res) =>
          setVars({
            inputs: res.workflow?.interface?.inputs?.variables ?? [],
            outputs: res.workflow?.interface?.outputs?.variables ?? [],
          }),
        () => undefined,
      );
    }
  }, [eid, terminal]);
  return (
    <div class="data">
      <div>
        <h3>Inputs</h3>
        <LiteralMapView map={data?.inputs} vars={vars.inputs} />
      </div>
      <div>
        <h3>Outputs</h3>
        {execution.phase === ExecutionPhase.SUCCEEDED ? (
          <LiteralMapView map={data?.outputs} vars={vars.outputs} />
        ) : (
          <p class="muted">{terminal ? "none" : "when it succeeds"}</p>
        )}
      </div>
    </div>
  );
}

function ExecutionHead(props: {
  eid: ExecutionIdentifier;
  execution: Execution;
  busy: boolean;
  local: boolean;
  onTerminate: () => void;
  actionError: string;
}) {
  const { eid, execution, busy, local, onTerminate: terminate, actionError } = props;
  const running = !TERMINAL_EXECUTION.has(execution.phase);
  const c = execution.nodes;
  return (
    <header class="execution-head">
      <h2>
        <span class="mono">{eid.name}</span>{" "}
        <span
          class={`badge big ${executionPhaseClass(execution.phase)}`}
          data-execution-phase={executionPhaseName(execution.phase)}
        >
          {executionPhaseName(execution.phase)}
        </span>
      </h2>
      <div class="facts">
        <span>workflow {idText(execution.workflowId)}</span>
        {execution.launchPlanId?.name && <span>launch plan {idText(execution.launchPlanId)}</span>}
        <span>created {timeText(execution.createdAt)}</span>
        <span>
          {running ? "running for" : "took"}{" "}
          {spanText(between(execution.createdAt, execution.updatedAt))}
        </span>
        <Progress e={execution} />
        {c && (
          <span class="counts" data-counts>
            {count(c.total)} nodes: {count(c.succeeded)} succeeded, {count(c.running)} running
            {c.queued ? ` (${count(c.queued)} waiting)` : ""}, {count(c.failed)} failed,{" "}
            {count(c.skipped)} skipped, {count(c.cached)} cached
          </span>
        )}
        {Object.entries(execution.labels).map(([k, v]) => (
          <span key={k} class="label">
            {k}={v}
          </span>
        ))}
      </div>
      {running && (
        <button
          type="button"
          class="danger"
          disabled={busy}
          onClick={terminate}
          title={local ? "the plait run driving it applies the termination" : undefined}
        >
          Terminate
        </button>
      )}
      {actionError && <p class="error-text">{actionError}</p>}
      {execution.error?.message && (
        <pre class="error-text execution-error">
          {execution.error.code}
          {execution.error.nodeId ? ` at node ${execution.error.nodeId}` : ""}:{" "}
          {execution.error.message}
        </pre>
      )}
    </header>
  );
}

export function ExecutionPage({ route, parts }: { route: Route; parts: string[] }) {
  const eid = useExecutionId(parts);
  const level = route.query.get("level") ?? "";
  const { execution, version, dirty, error, setExecution } = useLiveExecution(eid);
  const [busy, setBusy] = useState(false);
  const [actionError, setActionError] = useState("");
  const [local, setLocal] = useState(false);
  useEffect(() => {
    consoleSettings().then((s) => setLocal(s.mode === "local"));
  }, []);

  const terminate = async () => {
    if (!window.confirm(`Terminate ${eid.name}? Running attempts are cancelled.`)) return;
    setBusy(true);
    try {
      const res = await executions.terminateExecution({
        id: eid,
        reason: "terminated from the console",
      });
      if (res.execution) setExecution(res.execution);
    } catch (err) {
      setActionError(errorText(err));
    } finally {
      setBusy(false);
    }
  };

  if (error) return <p class="error-text">{error}</p>;
  // The graph is asked for at once, in parallel with the execution's state.
  return (
    <section class="execution" data-execution-page={eid.name}>
      {execution ? (
        <ExecutionHead
          eid={eid}
          execution={execution}
          busy={busy}
          local={local}
          onTerminate={terminate}
          actionError={actionError}
        />
      ) : (
        <p class="muted">Loading {eid.name}…</p>
      )}
      <Breadcrumbs eid={eid} level={level} />
      <GraphView
        eid={eid}
        level={level}
        version={version}
        dirty={dirty}
        onLevel={(p) => navigate(levelPath(eid, p))}
      />
      {execution?.nodes && execution.nodes.failed > 0 && (
        <Failures eid={eid} failed={execution.nodes.failed} />
      )}
      {execution && <DataSection eid={eid} execution={execution} />}
    </section>
  );
}
