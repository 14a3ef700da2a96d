// Executions, newest first: filters by phase, workflow and label, live phases, paging.
import { useEffect, useState } from "preact/hooks";
import { errorText, executions, isAbort } from "../api";
import {
  between,
  count,
  executionPath,
  executionPhaseClass,
  executionPhaseName,
  spanText,
  timeText,
} from "../format";
import { ExecutionPhase } from "../gen/plaitidl/core/v1/execution_pb";
import type { Execution } from "../gen/plaitidl/service/v1/execution_service_pb";
import { linkClick, navigate, queryString, type Route } from "../router";

const PAGE = 25;
const POLL_MS = 2000;
const PHASES = [
  ExecutionPhase.QUEUED,
  ExecutionPhase.RUNNING,
  ExecutionPhase.SUCCEEDED,
  ExecutionPhase.FAILED,
  ExecutionPhase.ABORTED,
];

function parseLabels(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of text.split(",")) {
    const [k, ...v] = part.split("=");
    if (k.trim() && v.length) out[k.trim()] = v.join("=").trim();
  }
  return out;
}

export function Progress({ e }: { e: Execution }) {
  const c = e.nodes;
  if (!c || c.total === 0) return <span class="muted">–</span>;
  const pct = (n: number) => `${(100 * n) / c.total}%`;
  return (
    <span
      class="progress"
      title={`${c.succeeded} succeeded, ${c.running} running, ${c.failed} failed, ${c.skipped} skipped of ${c.total}`}
    >
      <span class="bar">
        <i class="ok" style={{ width: pct(c.succeeded) }} />
        <i class="skip" style={{ width: pct(c.skipped) }} />
        <i class="run" style={{ width: pct(c.running) }} />
        <i class="bad" style={{ width: pct(c.failed) }} />
      </span>
      <span class="muted">
        {count(c.succeeded + c.skipped)}/{count(c.total)}
      </span>
    </span>
  );
}

export function ExecutionsPage({ route }: { route: Route }) {
  const q = route.query;
  const phase = q.get("phase") ?? "";
  const workflow = q.get("workflow") ?? "";
  const label = q.get("label") ?? "";
  const token = q.get("page") ?? "";
  const [rows, setRows] = useState<Execution[]>([]);
  const [next, setNext] = useState("");
  const [error, setError] = useState("");
  const [loaded, setLoaded] = useState(false);
  const [draft, setDraft] = useState({ workflow, label });

  useEffect(() => {
    setDraft({ workflow, label });
  }, [workflow, label]);

  useEffect(() => {
    let ctrl = new AbortController();
    const load = () => {
      ctrl = new AbortController();
      executions
        .listExecutions(
          {
            phases: phase
              ? [ExecutionPhase[phase.toUpperCase() as keyof typeof ExecutionPhase]]
              : [],
            workflowName: workflow,
            labels: parseLabels(label),
            pageSize: PAGE,
            pageToken: token,
          },
          { signal: ctrl.signal },
        )
        .then(
          (res) => {
            setRows(res.executions);
            setNext(res.nextPageToken);
            setError("");
            setLoaded(true);
          },
          (err) => {
            if (!isAbort(err)) setError(errorText(err));
            setLoaded(true);
          },
        );
    };
    load();
    const timer = window.setInterval(() => {
      if (!document.hidden) load();
    }, POLL_MS);
    return () => {
      window.clearInterval(timer);
      ctrl.abort();
    };
  }, [phase, workflow, label, token]);

  const go = (values: Record<string, string>) =>
    navigate(`/executions${queryString({ phase, workflow, label, ...values })}`);

  return (
    <section>
      <h2>Executions</h2>
      <form
        class="filters"
        onSubmit={(e) => {
          e.preventDefault();
          go({ workflow: draft.workflow, label: draft.label, page: "" });
        }}
      >
        <select
          name="phase"
          value={phase}
          onChange={(e) => go({ phase: e.currentTarget.value, page: "" })}
        >
          <option value="">every phase</option>
          {PHASES.map((p) => (
            <option key={p} value={executionPhaseName(p)}>
              {executionPhaseName(p)}
            </option>
          ))}
        </select>
        <input
          name="workflow"
          placeholder="workflow name"
          value={draft.workflow}
          onInput={(e) => setDraft({ ...draft, workflow: e.currentTarget.value })}
        />
        <input
          name="label"
          placeholder="label: key=value"
          value={draft.label}
          onInput={(e) => setDraft({ ...draft, label: e.currentTarget.value })}
        />
        <button type="submit">Filter</button>
      </form>
      {error && <p class="error-text">{error}</p>}
      <table class="list executions">
        <thead>
          <tr>
            <th>name</th>
            <th>phase</th>
            <th>workflow</th>
            <th>nodes</th>
            <th>created</th>
            <th>took</th>
            <th>labels</th>
          </tr>
        </thead>
        <tbody>
          {rows.map((e) => {
            const id = e.id;
            if (!id) return null;
            const href = executionPath(id);
            return (
              <tr key={id.name} data-execution={id.name}>
                <td>
                  <a href={href} onClick={(ev) => linkClick(ev, href)} class="mono">
                    {id.name}
                  </a>
                </td>
                <td>
                  <span class={`badge ${executionPhaseClass(e.phase)}`}>
                    {executionPhaseName(e.phase)}
                  </span>
                </td>
                <td>{e.launchPlanId?.name || e.workflowId?.name}</td>
                <td>
                  <Progress e={e} />
                </td>
                <td class="muted">{timeText(e.createdAt)}</td>
                <td class="muted">{spanText(between(e.createdAt, e.updatedAt))}</td>
                <td class="labels">
                  {Object.entries(e.labels).map(([k, v]) => (
                    <span key={k} class="label">
                      {k}={v}
                    </span>
                  ))}
                </td>
              </tr>
            );
          })}
        </tbody>
      </table>
      {loaded && rows.length === 0 && !error && (
        <p class="muted">
          No executions{phase || workflow || label ? " match" : " yet"}. Launch one from{" "}
          <a href="/workflows" onClick={(e) => linkClick(e, "/workflows")}>
            Workflows
          </a>{" "}
          or with <code>plait run</code>.
        </p>
      )}
      <div class="pager">
        <button type="button" disabled={!token} onClick={() => window.history.back()}>
          ‹ newer
        </button>
        <button type="button" disabled={!next} onClick={() => go({ page: next })}>
          older ›
        </button>
      </div>
    </section>
  );
}
