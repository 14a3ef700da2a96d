"""The scheduler: a reconciler over the store, split by concern.

- `loop`: passes, commits, ownership leases, watchers (`Scheduler`).
- `state`: runs, frames and nodes in memory.
- `graph`: the walker that moves nodes through their frames.
- `journal`: transitions turned into records and events, in one place.
- `retries`, `cache`, `recovery`: budgets and timeouts; cache keys and waiters; adoption.
- `nodes/`: one handler per node kind (task, workflow, branch, array, dynamic) behind the
  narrow `Graph` interface of `nodes.base`.
"""

from plait_engine.scheduler.loop import Scheduler
from plait_engine.scheduler.nodes.base import SchedulerConfig
from plait_engine.scheduler.state import Run

__all__ = ["Run", "Scheduler", "SchedulerConfig"]
