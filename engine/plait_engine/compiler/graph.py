"""Graph shape: upstream nodes, node counts, the node index and dependency cycles."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from plaitidl.core.v1 import literals_pb2, workflow_pb2

from plait_engine.ids import START_NODE

__all__ = ["count_nodes", "find_cycle", "index_nodes", "node_upstreams"]


def node_upstreams(node: workflow_pb2.Node) -> set[str]:
    """The ids of the sibling nodes `node` depends on.

    Promises anywhere in its bindings, in the bindings of branch cases' then-nodes (and else
    node), and explicit `upstream_node_ids`; "start-node" excluded. An array node's inner node
    bindings are ignored by the engine and so are not counted.

    Args:
        node: The node.

    Returns:
        The ids.
    """
    out: set[str] = set()
    stack = [node]
    while stack:
        cur = stack.pop()
        out.update(cur.upstream_node_ids)
        for b in cur.inputs:
            _collect_promises(b.binding, out)
        if cur.WhichOneof("target") == "branch_node":
            stack.extend(_cases(cur.branch_node))
    out.discard(START_NODE)
    return out


def _cases(bn: workflow_pb2.BranchNode) -> list[workflow_pb2.Node]:
    out = [blk.then_node for blk in (bn.case, *bn.other) if blk.HasField("then_node")]
    if bn.HasField("else_node"):
        out.append(bn.else_node)
    return out


def _collect_promises(bd: literals_pb2.BindingData, out: set[str]) -> None:
    stack = [bd]
    while stack:
        cur = stack.pop()
        kind = cur.WhichOneof("value")
        if kind == "promise":
            out.add(cur.promise.node_id)
        elif kind == "collection":
            stack.extend(cur.collection.bindings)
        elif kind == "map":
            stack.extend(cur.map.bindings.values())


def count_nodes(nodes: Iterable[workflow_pb2.Node]) -> int:
    """Nodes in a graph, counting branch cases and array inner nodes."""
    n = 0
    stack = list(nodes)
    while stack:
        node = stack.pop()
        n += 1
        kind = node.WhichOneof("target")
        if kind == "branch_node":
            stack.extend(_cases(node.branch_node))
        elif kind == "array_node" and node.array_node.HasField("node"):
            stack.append(node.array_node.node)
    return n


def index_nodes(nodes: Sequence[workflow_pb2.Node]) -> tuple[dict[str, int], list[int]]:
    """Where each node id first appears, and the positions of later duplicates.

    Args:
        nodes: The graph's nodes.

    Returns:
        ``(id -> first position, [positions of nodes whose id was already used])``.
    """
    index_of: dict[str, int] = {}
    duplicates: list[int] = []
    for i, node in enumerate(nodes):
        if node.id in index_of:
            duplicates.append(i)
        else:
            index_of[node.id] = i
    return index_of, duplicates


def find_cycle(deps: Mapping[str, set[str]]) -> list[str] | None:
    """One dependency cycle, as ``[a, b, ..., a]``, or None (Kahn's algorithm, linear).

    Args:
        deps: Node id to the ids it waits for. A node that is not a key waits for nothing
            (a wide graph need not hold an empty set per node).

    Returns:
        The cycle, or None when the graph is acyclic.
    """
    pending = {n: sum(1 for up in d if up in deps) for n, d in deps.items()}
    users: dict[str, list[str]] = {}
    for n, d in deps.items():
        for up in d:
            if up in deps:
                users.setdefault(up, []).append(n)
    ready = [n for n, c in pending.items() if c == 0]
    while ready:
        n = ready.pop()
        for u in users.get(n, ()):
            pending[u] -= 1
            if pending[u] == 0:
                ready.append(u)
    left = {n for n, c in pending.items() if c > 0}
    if not left:
        return None
    # Every leftover node still waits on a leftover node, so walking them must loop.
    cur = next(n for n in deps if n in left)
    path: list[str] = []
    at: dict[str, int] = {}
    while cur not in at:
        at[cur] = len(path)
        path.append(cur)
        cur = min(d for d in deps[cur] if d in left)
    return [*path[at[cur] :], cur]
