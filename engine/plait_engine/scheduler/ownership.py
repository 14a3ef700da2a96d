"""Who drives which execution: this replica's id, and when it may take an execution over.

An execution is claimable when nobody holds a live lease on it. A lease held by a process of
this host that no longer exists (a crashed engine, a SIGKILLed `plait run`) is taken over at
once instead of after its expiry: the fencing epoch still protects against a late write.
"""

from __future__ import annotations

import os
import secrets
import socket

from plait_engine.store import ExecutionRecord


def new_owner_id() -> str:
    """A replica id unique to this process: ``host/pid/random``."""
    return f"{socket.gethostname()}/{os.getpid()}/{secrets.token_hex(3)}"


def owner_is_dead(owner: str) -> bool:
    """Whether `owner` names a process of this host that no longer runs."""
    host, _, rest = owner.partition("/")
    pid_text = rest.partition("/")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # it exists, run by someone else
        return False
    return False


def describe_owner(record: ExecutionRecord) -> str:
    """Who runs an execution, for messages."""
    host, _, rest = record.owner.partition("/")
    pid = rest.partition("/")[0]
    return f"process {pid} on {host}" if pid else "another engine"
