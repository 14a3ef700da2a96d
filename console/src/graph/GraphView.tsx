// The live graph of one level of an execution, with containers expanded in place.
import { useCallback, useEffect, useMemo, useRef, useState } from "preact/hooks";
import { errorText, executions, isAbort } from "../api";
import {
  cacheText,
  count,
  levelPath,
  localId,
  nodePath,
  nodePhaseName,
  phaseClass,
} from "../format";
import { NodePhase } from "../gen/plaitidl/core/v1/execution_pb";
import type { ExecutionIdentifier } from "../gen/plaitidl/core/v1/identifier_pb";
import {
  type GetNodeGraphResponse,
  type GraphNode,
  GraphNodeKind,
  type PhaseCount,
} from "../gen/plaitidl/service/v1/execution_service_pb";
import { linkClick } from "../router";
import { GroupPanel } from "./GroupPanel";
import { type Box, edgePath, HEADER, type Laid, layout, PAD } from "./layout";

// Containers are opened in place, breadth first, while the picture stays this small.
const AUTO_ITEMS = 48;
const AUTO_DEPTH = 6;
const REFRESH_MS = 700;

export const PHASE_COLORS: [NodePhase, string][] = [
  [NodePhase.SUCCEEDED, "#2e9d5b"],
  [NodePhase.RUNNING, "#2f72d6"],
  [NodePhase.DYNAMIC_RUNNING, "#7a4fd0"],
  [NodePhase.QUEUED, "#8aa4c8"],
  [NodePhase.RETRYING, "#d99a1e"],
  [NodePhase.FAILED, "#d23f3f"],
  [NodePhase.ABORTED, "#d9731e"],
  [NodePhase.SKIPPED, "#b9bec7"],
];

function kindText(item: GraphNode): string {
  switch (item.kind) {
    case GraphNodeKind.TASK:
      return item.execution?.isDynamic ? "dynamic" : "task";
    case GraphNodeKind.WORKFLOW:
      return "workflow";
    case GraphNodeKind.BRANCH:
      return "branch";
    case GraphNodeKind.ARRAY:
      return "map";
    default:
      return "";
  }
}

function total(counts: PhaseCount[]): number {
  return counts.reduce((n, c) => n + c.count, 0);
}

function done(counts: PhaseCount[]): number {
  const finished = [NodePhase.SUCCEEDED, NodePhase.SKIPPED, NodePhase.FAILED, NodePhase.ABORTED];
  return counts.filter((c) => finished.includes(c.phase)).reduce((n, c) => n + c.count, 0);
}

function subline(item: GraphNode): string {
  const parts = [kindText(item)];
  const ex = item.execution;
  parts.push(ex ? nodePhaseName(ex.phase) : "not started");
  if (ex && ex.attempt > 1) parts.push(`attempt ${ex.attempt}`);
  if (ex && cacheText(ex.cacheStatus) === "cache hit") parts.push("cached");
  if (item.innerPhases.length)
    parts.push(`${count(done(item.innerPhases))}/${count(total(item.innerPhases))} inside`);
  return parts.filter(Boolean).join(" · ");
}

function clip(text: string, chars: number): string {
  return text.length > chars ? `${text.slice(0, chars - 1)}…` : text;
}

function PhaseBar(props: { counts: PhaseCount[]; size: number; x: number; y: number; w: number }) {
  const { counts, size, x, y, w } = props;
  let at = x;
  const segments = PHASE_COLORS.map(([phase, color]) => {
    const n = counts.find((c) => c.phase === phase)?.count ?? 0;
    const width = size ? (n / size) * w : 0;
    const seg =
      width > 0 ? <rect key={phase} x={at} y={y} width={width} height={8} fill={color} /> : null;
    at += width;
    return seg;
  });
  return (
    <g class="phase-bar">
      <rect x={x} y={y} width={w} height={8} class="bar-empty" />
      {segments}
    </g>
  );
}

interface Handlers {
  selected: string;
  expanded: Set<string>;
  onSelect: (box: Box) => void;
  onToggle: (id: string) => void;
  onOpen: (id: string) => void;
}

function GroupBox({ box, h }: { box: Box; h: Handlers }) {
  const it = box.item;
  const created = total(it.groupPhases);
  const failed = it.groupPhases.find((c) => c.phase === NodePhase.FAILED)?.count ?? 0;
  return (
    <g
      class={`gnode group ${h.selected === it.id ? "selected" : ""}`}
      data-group={it.name}
      data-node-id={it.id}
      transform={`translate(${box.x},${box.y})`}
      onClick={(e) => {
        e.stopPropagation();
        h.onSelect(box);
      }}
    >
      <rect class="stack" x={6} y={6} width={box.w - 6} height={box.h - 6} rx={8} />
      <rect class="body" width={box.w - 6} height={box.h - 6} rx={8} />
      <text x={10} y={20} class="name">
        {clip(it.name, 16)} ×{count(it.groupSize)}
      </text>
      <text x={10} y={38} class="sub">
        {count(done(it.groupPhases))} done · {count(created - done(it.groupPhases))} active
        {failed ? ` · ${count(failed)} failed` : ""}
      </text>
      <PhaseBar counts={it.groupPhases} size={it.groupSize} x={10} y={48} w={box.w - 26} />
    </g>
  );
}

function NodeBox({ box, h }: { box: Box; h: Handlers }) {
  const it = box.item;
  const phase = it.execution?.phase ?? NodePhase.UNSPECIFIED;
  const container = it.hasChildren;
  const open = Boolean(box.inner);
  return (
    <g
      class={`gnode ${phaseClass(phase)} ${container ? "container" : ""} ${open ? "open" : ""} ${
        h.selected === it.id ? "selected" : ""
      }`}
      data-node-id={it.id}
      data-phase={nodePhaseName(phase)}
      transform={`translate(${box.x},${box.y})`}
      onClick={(e) => {
        e.stopPropagation();
        h.onSelect(box);
      }}
      onDblClick={(e) => {
        e.stopPropagation();
        if (container) h.onOpen(it.id);
      }}
    >
      <title>{`${it.id}\n${subline(it)}${it.condition ? `\n${it.condition}` : ""}`}</title>
      <rect class="body" width={box.w} height={box.h} rx={open ? 10 : 6} />
      <rect class="accent" width={5} height={open ? HEADER - 8 : box.h} rx={2} />
      <text x={12} y={19} class="name">
        {clip(it.name || localId(it.id), Math.floor((box.w - 30) / 7.5))}
      </text>
      <text x={12} y={open ? 33 : 38} class="sub">
        {clip(
          it.condition ? `${it.condition}` : subline(it),
          Math.floor((box.w - (open ? 30 : 16)) / 5.8),
        )}
      </text>
      {container && (
        <g
          class="toggle"
          data-toggle={it.id}
          transform={`translate(${box.w - 22},4)`}
          onClick={(e) => {
            e.stopPropagation();
            h.onToggle(it.id);
          }}
        >
          <rect width={18} height={18} rx={4} />
          <text x={9} y={13}>
            {open ? "−" : "+"}
          </text>
        </g>
      )}
      {box.inner && (
        <g transform={`translate(${PAD},${HEADER})`}>
          <LevelView laid={box.inner} h={h} />
        </g>
      )}
    </g>
  );
}

function LevelView({ laid, h }: { laid: Laid; h: Handlers }) {
  return (
    <g>
      {laid.edges.map((e) => (
        <path key={`${e.from.item.id}>${e.to.item.id}`} class="edge" d={edgePath(e)} />
      ))}
      {laid.boxes.map((b) =>
        b.item.groupSize ? (
          <GroupBox key={b.item.id} box={b} h={h} />
        ) : (
          <NodeBox key={b.item.id} box={b} h={h} />
        ),
      )}
    </g>
  );
}

function SelectedPanel(props: {
  eid: ExecutionIdentifier;
  box: Box;
  onOpen: (id: string) => void;
  onClose: () => void;
}) {
  const { eid, box, onOpen, onClose } = props;
  const it = box.item;
  const ex = it.execution;
  const href = nodePath(eid, it.id);
  return (
    <aside class="panel" data-panel="node">
      <button type="button" class="close" onClick={onClose} title="close">
        ×
      </button>
      <h3>{it.name || localId(it.id)}</h3>
      <div class="muted mono">{it.id}</div>
      <p>
        <span class={`badge ${phaseClass(ex?.phase)}`}>
          {nodePhaseName(ex?.phase ?? NodePhase.UNSPECIFIED)}
        </span>{" "}
        {kindText(it)}
        {ex && ex.attempt > 0 ? ` · attempt ${ex.attempt}` : ""}
        {ex && cacheText(ex.cacheStatus) ? ` · ${cacheText(ex.cacheStatus)}` : ""}
      </p>
      {it.condition && <p class="mono">{it.condition}</p>}
      {ex?.detail && <p class="muted">{ex.detail}</p>}
      {ex?.error?.message && (
        <pre class="error-text">
          {ex.error.code}: {ex.error.message}
        </pre>
      )}
      {it.innerPhases.length > 0 && (
        <p>
          inside:{" "}
          {it.innerPhases.map((c) => `${count(c.count)} ${nodePhaseName(c.phase)}`).join(", ")}
        </p>
      )}
      <p class="actions">
        {ex && (
          <a href={href} onClick={(e) => linkClick(e, href)} class="button">
            Node details
          </a>
        )}
        {it.hasChildren && (
          <button type="button" onClick={() => onOpen(it.id)}>
            Open inside
          </button>
        )}
      </p>
    </aside>
  );
}

/** The graph of `level` of an execution; `version` changes when the execution changed. */
export function GraphView(props: {
  eid: ExecutionIdentifier;
  level: string;
  version: number;
  dirty: { current: Set<string> };
  onLevel: (path: string) => void;
}) {
  const { eid, level, version, dirty, onLevel } = props;
  const [levels, setLevels] = useState(() => new Map<string, GetNodeGraphResponse>());
  const [expanded, setExpanded] = useState(() => new Set<string>());
  const [collapsed, setCollapsed] = useState(() => new Set<string>());
  const [selected, setSelected] = useState<Box | null>(null);
  const [error, setError] = useState("");
  const [zoom, setZoom] = useState(1);
  const pending = useRef(new Set<string>());

  const fetchLevel = useCallback(
    async (path: string) => {
      pending.current.add(path);
      try {
        const res = await executions.getNodeGraph({ id: eid, parentNodeId: path });
        setLevels((old) => new Map(old).set(path, res));
        setError("");
      } catch (err) {
        if (!isAbort(err)) setError(errorText(err));
      } finally {
        pending.current.delete(path);
      }
    },
    [eid],
  );

  useEffect(() => {
    setLevels(new Map());
    setExpanded(new Set());
    setCollapsed(new Set());
    setSelected(null);
    void fetchLevel(level);
  }, [level, fetchLevel]);

  // Open containers in place, breadth first, while the picture stays small.
  useEffect(() => {
    const root = levels.get(level);
    if (!root) return;
    let shown = 0;
    const frontier: { path: string; depth: number }[] = [{ path: level, depth: 0 }];
    const candidates: string[] = [];
    while (frontier.length) {
      const { path, depth } = frontier.shift() as { path: string; depth: number };
      const lv = levels.get(path);
      if (!lv) continue;
      shown += lv.nodes.length;
      for (const n of lv.nodes) {
        if (!n.hasChildren || n.groupSize) continue;
        if (expanded.has(n.id)) frontier.push({ path: n.id, depth: depth + 1 });
        else if (!collapsed.has(n.id) && depth + 1 < AUTO_DEPTH) candidates.push(n.id);
      }
    }
    const take: string[] = [];
    for (const c of candidates) {
      if (shown >= AUTO_ITEMS) break;
      take.push(c);
      shown += 4;
    }
    if (take.length) {
      setExpanded((old) => new Set([...old, ...take]));
      for (const t of take) if (!levels.has(t) && !pending.current.has(t)) void fetchLevel(t);
    }
  }, [levels, expanded, collapsed, level, fetchLevel]);

  // Live: refetch the shown levels that changed (and their ancestors, whose counts did), at
  // most every REFRESH_MS, and less often when a round of refetches takes long (a huge level).
  const lastRefresh = useRef(0);
  const cost = useRef(0);
  const busy = useRef(false);
  const timer = useRef(0);
  const refresh = useCallback(() => {
    window.clearTimeout(timer.current);
    const gap = Math.max(REFRESH_MS, 3 * cost.current);
    const wait = Math.max(0, lastRefresh.current + gap - Date.now());
    timer.current = window.setTimeout(async () => {
      if (busy.current) {
        refresh();
        return;
      }
      const changed = [...dirty.current];
      dirty.current.clear();
      const shown = [level, ...[...expanded].filter((p) => p.startsWith(level ? `${level}/` : ""))];
      const todo = shown.filter((l) =>
        changed.some((p) => p === "*" || p === l || l === "" || p.startsWith(`${l}/`)),
      );
      busy.current = true;
      const started = Date.now();
      try {
        await Promise.all(todo.map((p) => fetchLevel(p)));
      } finally {
        busy.current = false;
        lastRefresh.current = Date.now();
        cost.current = lastRefresh.current - started;
      }
    }, wait);
  }, [dirty, level, expanded, fetchLevel]);
  // biome-ignore lint/correctness/useExhaustiveDependencies: refresh on a new version only
  useEffect(() => {
    if (version > 0) refresh();
  }, [version]);
  useEffect(() => () => window.clearTimeout(timer.current), []);

  const laid = useMemo(() => layout(level, levels, expanded), [level, levels, expanded]);

  const toggle = (id: string) => {
    if (expanded.has(id)) {
      const next = new Set([...expanded].filter((p) => p !== id && !p.startsWith(`${id}/`)));
      setExpanded(next);
      setCollapsed(new Set(collapsed).add(id));
    } else {
      setExpanded(new Set(expanded).add(id));
      const c = new Set(collapsed);
      c.delete(id);
      setCollapsed(c);
      if (!levels.has(id)) void fetchLevel(id);
    }
  };

  const handlers: Handlers = {
    selected: selected?.item.id ?? "",
    expanded,
    onSelect: setSelected,
    onToggle: toggle,
    onOpen: onLevel,
  };
  const root = levels.get(level);
  const width = Math.max(laid.w + 40, 300);
  const height = Math.max(laid.h + 40, 120);
  const current = selected ? (findBox(laid, selected.item.id) ?? selected) : null;
  return (
    <div class="graph-area">
      <div class="graph-toolbar">
        <button type="button" onClick={() => setZoom(Math.max(0.2, zoom / 1.25))} title="zoom out">
          −
        </button>
        <span class="muted">{Math.round(zoom * 100)}%</span>
        <button type="button" onClick={() => setZoom(Math.min(3, zoom * 1.25))} title="zoom in">
          +
        </button>
        {root && (
          <span class="muted">
            {count(root.nodeCount)} node{root.nodeCount === 1 ? "" : "s"} at this level
          </span>
        )}
        <span class="legend">
          {PHASE_COLORS.map(([p, c]) => (
            <span key={p}>
              <i style={{ background: c }} /> {nodePhaseName(p)}
            </span>
          ))}
        </span>
      </div>
      {error && <p class="error-text">{error}</p>}
      {root?.note && root.nodes.length === 0 && <p class="muted">{root.note}</p>}
      <div class="graph-body">
        <div class="graph-scroll" onClick={() => setSelected(null)}>
          <svg
            class="graph"
            data-ready={root ? "yes" : "no"}
            width={width * zoom}
            height={height * zoom}
            viewBox={`-20 -20 ${width} ${height}`}
          >
            <defs>
              <marker
                id="arrow"
                viewBox="0 0 8 8"
                refX="7"
                refY="4"
                markerWidth="7"
                markerHeight="7"
                orient="auto"
              >
                <path d="M0,0 L8,4 L0,8 z" class="arrowhead" />
              </marker>
            </defs>
            <LevelView laid={laid} h={handlers} />
          </svg>
        </div>
        {current && current.item.groupSize > 0 && (
          <GroupPanel
            eid={eid}
            group={current.item}
            parent={current.level}
            refreshed={levels.get(current.level)}
            onClose={() => setSelected(null)}
            onOpen={onLevel}
          />
        )}
        {current && current.item.groupSize === 0 && (
          <SelectedPanel
            eid={eid}
            box={current}
            onOpen={onLevel}
            onClose={() => setSelected(null)}
          />
        )}
      </div>
    </div>
  );
}

function findBox(laid: Laid, id: string): Box | undefined {
  for (const b of laid.boxes) {
    if (b.item.id === id) return b;
    const inner = b.inner && findBox(b.inner, id);
    if (inner) return inner;
  }
  return undefined;
}

/** Links to the levels above `level`: top › n0 › n0-else › ... */
export function Breadcrumbs(props: { eid: ExecutionIdentifier; level: string }) {
  const { eid, level } = props;
  const parts = level ? level.split("/") : [];
  const crumbs = [{ label: "top", path: "" }];
  parts.forEach((p, i) => {
    crumbs.push({ label: p, path: parts.slice(0, i + 1).join("/") });
  });
  return (
    <nav class="crumbs" data-level={level}>
      {crumbs.map((c, i) => {
        const href = levelPath(eid, c.path);
        return (
          <span key={c.path}>
            {i > 0 && " › "}
            {i === crumbs.length - 1 ? (
              <strong>{c.label}</strong>
            ) : (
              <a href={href} onClick={(e) => linkClick(e, href)}>
                {c.label}
              </a>
            )}
          </span>
        );
      })}
      {parts.length > 0 && (
        <span class="muted">
          {" "}
          ({parts.length} level{parts.length === 1 ? "" : "s"} down)
        </span>
      )}
    </nav>
  );
}
