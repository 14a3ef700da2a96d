"""A flow run in its own process, for the cancellation test: it waits on a 60 s execution.

Usage: ``python sigterm_flow.py ADDRESS TARGET LABEL`` (with ``PREFECT_API_URL`` set). The test
sends SIGTERM, as a Prefect runner does to cancel a flow run.
"""

from __future__ import annotations

import sys
from typing import Any

from prefect import flow

from prefect_plait import PlaitConnection, run_plait_execution


@flow
def long_echo(address: str, target: str, label: str) -> Any:
    inputs = {"seconds": 60.0, "text": "never"}
    conn = PlaitConnection(address=address)
    return run_plait_execution(conn, target, inputs, labels={"test": label})


if __name__ == "__main__":
    long_echo(*sys.argv[1:4])
