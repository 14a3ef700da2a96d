"""A launch plan that runs every second (tests/integration/test_schedules.py)."""

from __future__ import annotations

from datetime import datetime, timedelta

from plait import LaunchPlan, task, workflow


@task
def stamp(at: datetime) -> str:
    return at.isoformat()


@workflow
def stamped(at: datetime) -> str:
    return stamp(at=at)


every_second = LaunchPlan(
    stamped,
    "scheduled.every_second",
    schedule=timedelta(seconds=1),
    kickoff_time_input="at",
    catch_up="all",
)
