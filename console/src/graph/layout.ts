// Layered layout of graph levels, left to right; expanded containers hold their inside.
import type {
  GetNodeGraphResponse,
  GraphNode,
} from "../gen/plaitidl/service/v1/execution_service_pb";

export const NODE_W = 184;
export const NODE_H = 52;
export const GROUP_H = 70;
const GAP_X = 56;
const GAP_Y = 14;
export const PAD = 14;
export const HEADER = 42;

export interface Box {
  item: GraphNode;
  x: number;
  y: number;
  w: number;
  h: number;
  /** The laid-out inside of an expanded container. */
  inner?: Laid;
  /** The path of the level this box belongs to. */
  level: string;
}

export interface Edge {
  from: Box;
  to: Box;
}

export interface Laid {
  boxes: Box[];
  edges: Edge[];
  w: number;
  h: number;
}

/** Lay out the level `path` (and, inside expanded containers, theirs). */
export function layout(
  path: string,
  levels: Map<string, GetNodeGraphResponse>,
  expanded: Set<string>,
): Laid {
  const level = levels.get(path);
  const items = level?.nodes ?? [];
  const boxes = items.map((item): Box => {
    const open = item.groupSize === 0 && expanded.has(item.id) && levels.has(item.id);
    const inner = open ? layout(item.id, levels, expanded) : undefined;
    if (inner && inner.boxes.length > 0) {
      return {
        item,
        x: 0,
        y: 0,
        w: Math.max(NODE_W + 60, inner.w + 2 * PAD),
        h: inner.h + HEADER + PAD,
        inner,
        level: path,
      };
    }
    const w = item.groupSize ? NODE_W + 6 : NODE_W;
    return { item, x: 0, y: 0, w, h: item.groupSize ? GROUP_H : NODE_H, level: path };
  });
  const byId = new Map(boxes.map((b) => [b.item.id, b]));
  const layerOf = new Map<string, number>();
  for (const b of boxes) {
    let layer = 0;
    for (const up of b.item.upstreamIds) {
      const l = layerOf.get(up);
      if (l !== undefined) layer = Math.max(layer, l + 1);
    }
    layerOf.set(b.item.id, layer);
  }
  const layers: Box[][] = [];
  for (const b of boxes) {
    const l = layerOf.get(b.item.id) ?? 0;
    layers[l] ??= [];
    layers[l].push(b);
  }
  // Order each layer by where its upstreams are (one barycenter pass keeps edges short).
  const rank = new Map<string, number>();
  for (const [li, layer] of layers.entries()) {
    if (!layer) continue;
    if (li > 0) {
      const score = (b: Box) => {
        const ups = b.item.upstreamIds.map((u) => rank.get(u)).filter((r) => r !== undefined);
        return ups.length ? ups.reduce((a, r) => a + (r as number), 0) / ups.length : 1e9;
      };
      layer.sort((a, b) => score(a) - score(b));
    }
    layer.forEach((b, i) => {
      rank.set(b.item.id, i);
    });
  }
  let x = 0;
  let height = 0;
  const heights = layers.map(
    (layer) =>
      (layer ?? []).reduce((h, b) => h + b.h, 0) + GAP_Y * Math.max(0, (layer ?? []).length - 1),
  );
  const tallest = Math.max(0, ...heights);
  for (const [li, layer] of layers.entries()) {
    if (!layer) continue;
    const width = Math.max(...layer.map((b) => b.w));
    let y = (tallest - heights[li]) / 2;
    for (const b of layer) {
      b.x = x + (width - b.w) / 2;
      b.y = y;
      y += b.h + GAP_Y;
    }
    x += width + GAP_X;
    height = Math.max(height, y - GAP_Y);
  }
  const edges: Edge[] = [];
  for (const b of boxes) {
    for (const up of b.item.upstreamIds) {
      const from = byId.get(up);
      if (from) edges.push({ from, to: b });
    }
  }
  return { boxes, edges, w: Math.max(0, x - GAP_X), h: height };
}

/** The SVG path of an edge: a curve from the right side of one box to the left of another. */
export function edgePath(e: Edge): string {
  const x1 = e.from.x + e.from.w;
  const y1 = e.from.y + e.from.h / 2;
  const x2 = e.to.x;
  const y2 = e.to.y + e.to.h / 2;
  const dx = Math.max(20, (x2 - x1) / 2);
  return `M${x1},${y1} C${x1 + dx},${y1} ${x2 - dx},${y2} ${x2},${y2}`;
}
