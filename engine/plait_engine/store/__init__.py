"""The store: the engine's source of truth, behind one interface.

The scheduler reads and writes state only through `Store`. Every implementation must pass the
shared conformance suite in ``tests/integration/test_store_conformance.py``.
"""

from plait_engine.store._base import (
    CacheEntry,
    ExecutionRecord,
    NodeRecord,
    NodeUpdate,
    Store,
    TemplateKind,
    WriteBatch,
)
from plait_engine.store.sqlite import SqliteStore

__all__ = [
    "CacheEntry",
    "ExecutionRecord",
    "NodeRecord",
    "NodeUpdate",
    "SqliteStore",
    "Store",
    "TemplateKind",
    "WriteBatch",
]
