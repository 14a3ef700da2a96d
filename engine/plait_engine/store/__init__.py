"""The store: the engine's source of truth, behind one async contract.

Nothing above the service layer touches it. Every backend passes the conformance suite in
``tests/integration/test_store_conformance.py``.
"""

from plait_engine.store.contract import Store, TemplateItem
from plait_engine.store.errors import Conflict, NotFound, OwnershipLost, StoreError
from plait_engine.store.records import (
    ApplyResult,
    CacheEntry,
    DynamicSpecRecord,
    ExecutionFilter,
    ExecutionPayload,
    ExecutionRecord,
    ExecutionWrites,
    LogEntry,
    NodeRecord,
    NodeUpdate,
    QueuedDispatch,
    QueuedResult,
    Reservation,
    ScheduleStateRecord,
    TemplateKind,
    WriteBatch,
    zero_counts,
)

__all__ = [
    "ApplyResult",
    "CacheEntry",
    "Conflict",
    "DynamicSpecRecord",
    "ExecutionFilter",
    "ExecutionPayload",
    "ExecutionRecord",
    "ExecutionWrites",
    "LogEntry",
    "NodeRecord",
    "NodeUpdate",
    "NotFound",
    "OwnershipLost",
    "QueuedDispatch",
    "QueuedResult",
    "Reservation",
    "ScheduleStateRecord",
    "Store",
    "StoreError",
    "TemplateItem",
    "TemplateKind",
    "WriteBatch",
    "zero_counts",
]
