// The members of a group (a fan-out, an array node's instances), a page at a time, by phase.
import { useEffect, useState } from "preact/hooks";
import { errorText, executions, isAbort } from "../api";
import { between, count, localId, nodePath, nodePhaseName, phaseClass, spanText } from "../format";
import type { NodePhase } from "../gen/plaitidl/core/v1/execution_pb";
import type { ExecutionIdentifier } from "../gen/plaitidl/core/v1/identifier_pb";
import type { GraphNode, NodeExecution } from "../gen/plaitidl/service/v1/execution_service_pb";
import { linkClick } from "../router";

const PAGE = 50;

export function GroupPanel(props: {
  eid: ExecutionIdentifier;
  group: GraphNode;
  parent: string;
  /** The group's level as last fetched: a new one means its members may have changed. */
  refreshed: unknown;
  onClose: () => void;
  onOpen: (path: string) => void;
}) {
  const { eid, group, parent, refreshed, onClose, onOpen } = props;
  const [phase, setPhase] = useState<NodePhase | null>(null);
  const [tokens, setTokens] = useState<string[]>([""]);
  const [rows, setRows] = useState<NodeExecution[]>([]);
  const [next, setNext] = useState("");
  const [error, setError] = useState("");
  const page = tokens.length - 1;

  // A new group or filter starts at the first page.
  // biome-ignore lint/correctness/useExhaustiveDependencies: reset on a new group or filter
  useEffect(() => {
    setTokens([""]);
  }, [group.id, phase]);

  // biome-ignore lint/correctness/useExhaustiveDependencies: again after each change
  useEffect(() => {
    const ctrl = new AbortController();
    executions
      .listNodeExecutions(
        {
          id: eid,
          parentNodeId: parent,
          topLevelOnly: parent === "",
          name: group.name,
          phases: phase === null ? [] : [phase],
          pageSize: PAGE,
          pageToken: tokens[tokens.length - 1],
        },
        { signal: ctrl.signal },
      )
      .then(
        (res) => {
          setRows(res.nodeExecutions);
          setNext(res.nextPageToken);
          setError("");
        },
        (err) => {
          if (!isAbort(err)) setError(errorText(err));
        },
      );
    return () => ctrl.abort();
  }, [eid, parent, group.name, phase, tokens, refreshed]);

  const created = group.groupPhases.reduce((n, c) => n + c.count, 0);
  return (
    <aside class="panel group-panel" data-panel="group">
      <button type="button" class="close" onClick={onClose} title="close">
        ×
      </button>
      <h3>
        {group.name} ×{count(group.groupSize)}
      </h3>
      <div class="muted">
        {count(created)} created
        {group.groupSize > created ? `, ${count(group.groupSize - created)} not yet` : ""}
      </div>
      <div class="chips">
        <button
          type="button"
          class={phase === null ? "chip on" : "chip"}
          onClick={() => setPhase(null)}
        >
          all
        </button>
        {group.groupPhases.map((c) => (
          <button
            type="button"
            key={c.phase}
            data-phase-filter={nodePhaseName(c.phase)}
            class={`chip ${phaseClass(c.phase)} ${phase === c.phase ? "on" : ""}`}
            onClick={() => setPhase(c.phase)}
          >
            {nodePhaseName(c.phase)} {count(c.count)}
          </button>
        ))}
      </div>
      {error && <p class="error-text">{error}</p>}
      <table class="members">
        <tbody>
          {rows.map((n) => {
            const id = n.id?.nodeId ?? "";
            const href = nodePath(eid, id);
            return (
              <tr key={id} data-member={id}>
                <td>
                  <a href={href} onClick={(e) => linkClick(e, href)} class="mono">
                    {localId(id)}
                  </a>
                </td>
                <td>
                  <span class={`badge ${phaseClass(n.phase)}`}>{nodePhaseName(n.phase)}</span>
                </td>
                <td class="muted">{spanText(between(n.createdAt, n.updatedAt))}</td>
                <td>
                  {n.isDynamic && (
                    <button type="button" class="link" onClick={() => onOpen(id)}>
                      inside
                    </button>
                  )}
                </td>
              </tr>
            );
          })}
        </tbody>
      </table>
      <div class="pager">
        <button type="button" disabled={page === 0} onClick={() => setTokens(tokens.slice(0, -1))}>
          ‹ prev
        </button>
        <span class="muted" data-page={page + 1}>
          page {page + 1}
        </span>
        <button type="button" disabled={!next} onClick={() => setTokens([...tokens, next])}>
          next ›
        </button>
      </div>
    </aside>
  );
}
