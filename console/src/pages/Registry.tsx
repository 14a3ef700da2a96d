// Registered workflows, tasks and launch plans; a workflow or launch plan is launched from a
// form generated from its interface.
import { create } from "@bufbuild/protobuf";
import { useEffect, useState } from "preact/hooks";
import { consoleSettings, errorText, registry, schedules } from "../api";
import { fieldsOf, LaunchForm } from "../components/LaunchForm";
import { durationText, idText, timeText } from "../format";
import {
  type Identifier,
  IdentifierSchema,
  ResourceType,
} from "../gen/plaitidl/core/v1/identifier_pb";
import type { TypedInterface } from "../gen/plaitidl/core/v1/interface_pb";
import type { TaskTemplate } from "../gen/plaitidl/core/v1/tasks_pb";
import type { LaunchPlan, WorkflowTemplate } from "../gen/plaitidl/core/v1/workflow_pb";
import type { ScheduleState } from "../gen/plaitidl/service/v1/schedule_service_pb";
import { typeText } from "../literal";
import { linkClick, type Route } from "../router";

export type Kind = "workflows" | "tasks" | "launchplans";

const TITLES: Record<Kind, string> = {
  workflows: "Workflows",
  tasks: "Tasks",
  launchplans: "Launch plans",
};

interface Entry {
  id: Identifier;
  versions: number;
  detail: string;
}

function entityPath(kind: Kind, id: Identifier): string {
  const e = encodeURIComponent;
  return `/${kind}/${e(id.project)}/${e(id.domain)}/${e(id.name)}${id.version ? `?version=${e(id.version)}` : ""}`;
}

async function listAll(kind: Kind): Promise<{ id: Identifier; detail: string }[]> {
  const out: { id: Identifier; detail: string }[] = [];
  let pageToken = "";
  for (let page = 0; page < 20; page++) {
    if (kind === "workflows") {
      const res = await registry.listWorkflows({ pageSize: 500, pageToken });
      for (const w of res.workflows) {
        if (w.id) out.push({ id: w.id, detail: `${w.nodes.length} nodes` });
      }
      pageToken = res.nextPageToken;
    } else if (kind === "tasks") {
      const res = await registry.listTasks({ pageSize: 500, pageToken });
      for (const t of res.tasks) if (t.id) out.push({ id: t.id, detail: targetText(t) });
      pageToken = res.nextPageToken;
    } else {
      const res = await registry.listLaunchPlans({ pageSize: 500, pageToken });
      for (const lp of res.launchPlans) {
        if (lp.id) out.push({ id: lp.id, detail: `launches ${lp.workflowId?.name ?? ""}` });
      }
      pageToken = res.nextPageToken;
    }
    if (!pageToken) break;
  }
  return out;
}

function targetText(t: TaskTemplate): string {
  if (t.target.case === "worker") return `worker queue ${t.target.value.queue || "default"}`;
  if (t.target.case === "process") return `process ${t.target.value.command.join(" ")}`;
  return t.type;
}

/** The newest version of each name (lists are newest first). */
function newest(rows: { id: Identifier; detail: string }[]): Entry[] {
  const byName = new Map<string, Entry>();
  for (const r of rows) {
    const key = `${r.id.project}/${r.id.domain}/${r.id.name}`;
    const seen = byName.get(key);
    if (seen) seen.versions += 1;
    else byName.set(key, { id: r.id, versions: 1, detail: r.detail });
  }
  return [...byName.values()].sort((a, b) => a.id.name.localeCompare(b.id.name));
}

export function RegistryPage({ kind }: { kind: Kind }) {
  const [rows, setRows] = useState<Entry[] | undefined>();
  const [error, setError] = useState("");
  useEffect(() => {
    setRows(undefined);
    listAll(kind).then(
      (r) => setRows(newest(r)),
      (err) => setError(errorText(err)),
    );
  }, [kind]);
  return (
    <section>
      <h2>{TITLES[kind]}</h2>
      {error && <p class="error-text">{error}</p>}
      {rows && rows.length === 0 && (
        <p class="muted">
          None registered yet: <code>plait register</code>, <code>plait worker</code> or{" "}
          <code>plait run</code> register them.
        </p>
      )}
      <table class="list">
        <thead>
          <tr>
            <th>name</th>
            <th>project/domain</th>
            <th>newest version</th>
            <th>versions</th>
            <th />
          </tr>
        </thead>
        <tbody>
          {(rows ?? []).map((r) => {
            const href = entityPath(kind, { ...r.id, version: "" });
            return (
              <tr key={idText(r.id)} data-entity={r.id.name}>
                <td>
                  <a href={href} onClick={(e) => linkClick(e, href)}>
                    {r.id.name}
                  </a>
                </td>
                <td class="muted">
                  {r.id.project}/{r.id.domain}
                </td>
                <td class="mono muted">{r.id.version.slice(0, 16)}</td>
                <td>{r.versions}</td>
                <td class="muted">{r.detail}</td>
              </tr>
            );
          })}
        </tbody>
      </table>
    </section>
  );
}

function InterfaceView({ iface }: { iface: TypedInterface | undefined }) {
  const vars = (label: string, list: { name: string; type?: Parameters<typeof typeText>[0] }[]) => (
    <div>
      <h4>{label}</h4>
      {list.length === 0 ? (
        <p class="muted">none</p>
      ) : (
        <ul class="vars">
          {list.map((v) => (
            <li key={v.name}>
              <span class="mono">{v.name}</span>: <span class="type">{typeText(v.type)}</span>
            </li>
          ))}
        </ul>
      )}
    </div>
  );
  return (
    <div class="interface">
      {vars("inputs", iface?.inputs?.variables ?? [])}
      {vars("outputs", iface?.outputs?.variables ?? [])}
    </div>
  );
}

function ScheduleView({ id }: { id: Identifier }) {
  const [state, setState] = useState<ScheduleState | undefined>();
  useEffect(() => {
    schedules.listSchedules({ project: id.project, domain: id.domain }).then(
      (r) => setState(r.schedules.find((s) => s.launchPlanId?.name === id.name)),
      () => undefined,
    );
  }, [id.project, id.domain, id.name]);
  if (!state?.schedule) return null;
  const t = state.schedule.timing;
  return (
    <p>
      schedule: {t.case === "cron" ? `cron ${t.value}` : `every ${durationText(t.value)}`}
      {state.paused ? " (paused)" : ""}; next tick {timeText(state.nextTick)}
    </p>
  );
}

export function EntityPage({ kind, parts, route }: { kind: Kind; parts: string[]; route: Route }) {
  const [project, domain, name] = parts.map((p) => decodeURIComponent(p));
  const version = route.query.get("version") ?? "";
  const [wf, setWf] = useState<WorkflowTemplate | undefined>();
  const [task, setTask] = useState<TaskTemplate | undefined>();
  const [lp, setLp] = useState<LaunchPlan | undefined>();
  const [lpWf, setLpWf] = useState<WorkflowTemplate | undefined>();
  const [error, setError] = useState("");
  const [launchOff, setLaunchOff] = useState("");

  useEffect(() => {
    consoleSettings().then((s) => {
      if (!s.launch)
        setLaunchOff(
          "This console shows a local data dir and runs nothing: launch with plait run.",
        );
    });
  }, []);

  useEffect(() => {
    const id = create(IdentifierSchema, { project, domain, name, version });
    setError("");
    const fail = (err: unknown) => setError(errorText(err));
    if (kind === "workflows") {
      id.resourceType = ResourceType.WORKFLOW;
      registry.getWorkflow({ id }).then((r) => setWf(r.workflow), fail);
    } else if (kind === "tasks") {
      id.resourceType = ResourceType.TASK;
      registry.getTask({ id }).then((r) => setTask(r.task), fail);
    } else {
      id.resourceType = ResourceType.LAUNCH_PLAN;
      registry.getLaunchPlan({ id }).then((r) => {
        setLp(r.launchPlan);
        if (r.launchPlan?.workflowId) {
          registry
            .getWorkflow({ id: r.launchPlan.workflowId })
            .then((w) => setLpWf(w.workflow), fail);
        }
      }, fail);
    }
  }, [kind, project, domain, name, version]);

  if (error) return <p class="error-text">{error}</p>;
  return (
    <section class="entity">
      <h2>
        {name} <span class="muted small">{TITLES[kind].toLowerCase().replace(/s$/, "")}</span>
      </h2>
      {wf?.id && (
        <>
          <p class="muted mono">{idText(wf.id)}</p>
          {wf.description && <p>{wf.description}</p>}
          <p>{wf.nodes.length} nodes</p>
          <InterfaceView iface={wf.interface} />
          <LaunchForm
            key={idText(wf.id)}
            target={{ case: "workflowId", id: wf.id }}
            fields={fieldsOf(wf.interface?.inputs?.variables ?? [], wf.defaults?.parameters ?? [])}
            disabled={launchOff}
          />
        </>
      )}
      {task?.id && (
        <>
          <p class="muted mono">{idText(task.id)}</p>
          <p>
            {targetText(task)}; retries {task.metadata?.retries?.retries ?? 0}
            {task.metadata?.timeout ? `, timeout ${durationText(task.metadata.timeout)}` : ""}
            {task.metadata?.cache
              ? `, cached (version ${task.metadata.cacheVersion || "code"})`
              : ""}
          </p>
          <InterfaceView iface={task.interface} />
          <p class="muted">Tasks run inside workflows: launch a workflow that calls it.</p>
        </>
      )}
      {lp?.id && (
        <>
          <p class="muted mono">{idText(lp.id)}</p>
          <p>launches {idText(lp.workflowId)}</p>
          <ScheduleView id={lp.id} />
          <InterfaceView iface={lpWf?.interface} />
          {lpWf && (
            <LaunchForm
              key={idText(lp.id)}
              target={{ case: "launchPlanId", id: lp.id }}
              fields={fieldsOf(
                (lpWf.interface?.inputs?.variables ?? []).filter(
                  (v) => !(v.name in (lp.fixedInputs?.literals ?? {})),
                ),
                [...(lpWf.defaults?.parameters ?? []), ...(lp.defaultInputs?.parameters ?? [])],
              )}
              fixed={lp.fixedInputs}
              disabled={launchOff}
            />
          )}
        </>
      )}
    </section>
  );
}
