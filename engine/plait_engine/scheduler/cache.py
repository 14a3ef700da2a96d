"""The task cache: keys, and the nodes waiting for a serialized computation.

A cacheable node's key is its task's project, domain and name, its cache version, its
interface and a canonical hash of its inputs. With `cache_serialize`, the first node to reserve
a key computes it and identical nodes wait for its entry.
"""

from __future__ import annotations

from plaitidl.core.v1 import literals_pb2, tasks_pb2, workflow_pb2

from plait_engine.literals import interface_signature, literal_map_hash
from plait_engine.scheduler.state import NodeExec


def cacheable(n: NodeExec) -> bool:
    """Whether the node's outputs are cached (node override, else the task's setting)."""
    assert n.task is not None
    md = n.node.metadata
    return md.cache if md.HasField("cache") else n.task.metadata.cache


def serialized(n: NodeExec) -> bool:
    """Whether identical runs of the node wait for one computation."""
    return n.task is not None and n.task.metadata.cache_serialize


def key(
    task: tasks_pb2.TaskTemplate, inputs: literals_pb2.LiteralMap, node: workflow_pb2.Node
) -> str:
    """The cache key of a node running `task` on `inputs`.

    A `cache_version` set on the node or the task is the user's: it alone versions the key.
    Without one, the task's code digest does, so editing the code invalidates its results.
    """
    md = task.metadata
    version = node.metadata.cache_version or md.cache_version or f"code:{md.code_digest}"
    ignore = set(task.metadata.cache_ignore_inputs)
    parts = [
        task.id.project,
        task.id.domain,
        task.id.name,
        version,
        interface_signature(task.interface),
        literal_map_hash(inputs, ignore),
    ]
    return "|".join(parts)


def holder(n: NodeExec) -> str:
    """Who holds a reservation for the node: unique across executions and attempts."""
    return f"{n.frame.run.eid}:{n.path}"


class Waiters:
    """Nodes waiting for a key another node reserved, and nodes waiting for a lookup."""

    def __init__(self) -> None:
        self.by_key: dict[str, list[NodeExec]] = {}

    def add(self, n: NodeExec) -> None:
        """Wait for `n`'s key."""
        assert n.cache_key is not None
        self.by_key.setdefault(n.cache_key, []).append(n)

    def pop(self, key: str) -> list[NodeExec]:
        """The nodes waiting for a key (no longer waiting)."""
        return self.by_key.pop(key, [])

    def take_all(self) -> list[NodeExec]:
        """Every live waiter (to look again); the list empties."""
        nodes = [n for ns in self.by_key.values() for n in ns if n.live]
        self.by_key.clear()
        return nodes

    def __bool__(self) -> bool:
        return bool(self.by_key)
