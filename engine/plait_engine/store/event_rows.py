"""How a pass's events are stored: one row per execution and pass, not one per event.

A scheduler pass makes several events per node; storing each as a row of its own made events
half of what an execution stores and a quarter of a commit's work. A row now holds every event
a pass made for an execution: the fields they share (`ExecutionEvent.execution_id` and
`occurred_at`) once, then each event's own fields, compressed when that pays. The row's
sequence number is its last event's, so ``seq > after`` still finds every row holding a later
event. Reading a row gives each event back whole, numbered, as it was before: protobuf merges
concatenated fields, so an event is the shared part + its own part + its `sequence` field.

A row whose body starts with a byte other than 0 holds a single, already numbered event (the
first event of an execution, and rows written before this layout); a serialized
`ExecutionEvent` never starts with 0 (field number 0 does not exist).

A row's `node_id` column (what `Store.node_events` looks up) is its event's node when it holds
one event (NULL for the execution's own), and `MANY` when it holds several: a node's events are
then its rows plus the events of the `MANY` rows that are about it (`node_page`).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

from plait_engine.store.records import event_node
from plait_engine.wire import read_varint, varint

_PLAIN = b"\x00\x01"
_ZLIB = b"\x00\x02"
# Smaller payloads are stored as they are: compressing them saves little and costs a call.
_COMPRESS_FROM = 512
# The `node_id` of a row holding several events; no node id matches it (`NODE_ID_RULE`).
MANY = "*"
# Rows read at a time when looking for one node's events.
SCAN_ROWS = 500


def sequenced(event: bytes, seq: int) -> bytes:
    """A serialized `ExecutionEvent` with its `sequence` (field 2, a varint) set to `seq`.

    Appending the field is how protobuf merges: the last value wins, so no parse is needed.
    """
    return event + b"\x10" + varint(seq)


def event_row(shared: bytes, events: Sequence[bytes]) -> bytes:
    """The body of a row holding `events` (each an event's own fields, serialized), which all
    carry the fields `shared` holds."""
    parts = [varint(len(events)), varint(len(shared)), shared]
    for ev in events:
        parts.append(varint(len(ev)))
        parts.append(ev)
    payload = b"".join(parts)
    if len(payload) >= _COMPRESS_FROM:
        return _ZLIB + zlib.compress(payload, 1)
    return _PLAIN + payload


def row_node(shared: bytes, events: Sequence[bytes]) -> str | None:
    """The `node_id` column of the row `event_row(shared, events)` makes."""
    if len(events) == 1:
        return event_node(shared + events[0])
    return MANY


def row_count(body: bytes) -> int:
    """How many events a row body holds."""
    if not body or body[0] != 0:
        return 1
    payload = zlib.decompress(body[2:]) if body[:2] == _ZLIB else body[2:]
    return read_varint(payload, 0)[0]


def row_events(seq: int, body: bytes) -> list[tuple[int, bytes]]:
    """The events of a stored row, whole and numbered; `seq` is the row's (its last event's).

    Raises:
        ValueError: The body is not a row this module wrote.
    """
    if not body or body[0] != 0:
        return [(seq, body)]
    if body[:2] == _ZLIB:
        payload = zlib.decompress(body[2:])
    elif body[:2] == _PLAIN:
        payload = body[2:]
    else:
        raise ValueError(f"unknown event row format {body[:2]!r}")
    count, pos = read_varint(payload, 0)
    size, pos = read_varint(payload, pos)
    shared = payload[pos : pos + size]
    pos += size
    first = seq - count + 1
    out: list[tuple[int, bytes]] = []
    for i in range(count):
        size, pos = read_varint(payload, pos)
        s = first + i
        out.append((s, shared + payload[pos : pos + size] + b"\x10" + varint(s)))
        pos += size
    return out


def page(rows: Sequence[tuple[int, bytes]], after_seq: int, limit: int) -> list[tuple[int, bytes]]:
    """The events after `after_seq` held by `rows` (in sequence order), at most `limit`."""
    out: list[tuple[int, bytes]] = []
    for seq, body in rows:
        for s, ev in row_events(int(seq), bytes(body)):
            if s > after_seq:
                out.append((s, ev))
                if len(out) >= limit:
                    return out
    return out


def node_page(
    rows: Sequence[tuple[int, bytes]], node_id: str, after_seq: int, limit: int
) -> list[tuple[int, bytes]]:
    """`page`, only the events about the node `node_id` (rows of that node or of `MANY`)."""
    key = node_id.encode()
    out: list[tuple[int, bytes]] = []
    for seq, body in rows:
        for s, ev in row_events(int(seq), bytes(body)):
            # The byte search skips most other nodes' events without parsing them.
            if s > after_seq and key in ev and event_node(ev) == node_id:
                out.append((s, ev))
                if len(out) >= limit:
                    return out
    return out


__all__ = [
    "MANY",
    "SCAN_ROWS",
    "event_row",
    "node_page",
    "page",
    "row_count",
    "row_events",
    "row_node",
    "sequenced",
]
