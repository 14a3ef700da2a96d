"""The live one-line progress bar of `plait run` on a terminal."""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TextIO

# Redraw at most this often (seconds): a terminal is slow and a fan-out commits often.
_EVERY = 0.1
_BAR = 20


@dataclass
class Snapshot:
    """What the bar shows.

    Attributes:
        counts: Node counts (``total``, ``succeeded``, ``running`` (queued included),
            ``queued``, ``failed``, ``skipped``, ``cached``).
        running: Display names of nodes running now (repeats counted).
        building: Display names of dynamic nodes whose body is building a graph now.
        waiting: Why nodes wait, when the engine says (no worker serves their task version).
    """

    counts: Mapping[str, int]
    running: Iterable[str] = ()
    building: Iterable[str] = field(default=())
    waiting: str = ""


def _names(names: Iterable[str], limit: int = 3) -> str:
    common = Counter(n for n in names if n).most_common()
    parts = [f"{n} x{c}" if c > 1 else n for n, c in common[:limit]]
    if len(common) > limit:
        parts.append("...")
    return ", ".join(parts)


def render(snapshot: Snapshot, columns: int) -> str:
    """The bar as one line of at most ``columns - 1`` characters (no wrap, no stray text)."""
    c = snapshot.counts
    total = c.get("total", 0)
    done = c.get("succeeded", 0) + c.get("skipped", 0)
    queued = c.get("queued", 0)
    running = max(c.get("running", 0) - queued, 0)
    filled = int(_BAR * done / max(total, 1))
    bar = f"[{'#' * filled}{'.' * (_BAR - filled)}] "
    text = (
        f"{done}/{total} nodes done, {running} running, {queued} queued, "
        f"{c.get('failed', 0)} failed, {c.get('cached', 0)} cached"
    )
    building = _names(snapshot.building)
    names = _names(snapshot.running)
    tail = f"; building the graph of {building}..." if building else ""
    if snapshot.waiting and not building:
        tail = f"; waiting: {snapshot.waiting}"
    elif names and not building:
        tail = f"; running {names}"
    compact = f"{done}/{total} done, {running} run, {queued} queued, {c.get('failed', 0)} failed"
    width = columns - 1
    # The richest form that fits: a narrow terminal loses the bar, then the names, then words.
    for line in (bar + text + tail, text + tail, bar + text, text, compact):
        if len(line) <= width:
            return line
    return compact[: max(width, 0)]


class ProgressBar:
    """A one-line live progress bar, redrawn in place.

    Args:
        stream: Where to draw (a terminal).
    """

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream if stream is not None else sys.stderr
        self._last = 0.0
        self._drawn = 0

    def update(self, snapshot: Snapshot, *, force: bool = False) -> None:
        """Redraw (at most every 0.1 s unless `force`)."""
        now = time.monotonic()
        if not force and now - self._last < _EVERY:
            return
        self._last = now
        columns = self._columns()
        line = render(snapshot, columns)
        # Pad over what the previous frame drew, so that a shorter line leaves nothing behind;
        # never wider than the terminal, which would wrap onto a new line.
        pad = max(min(self._drawn, columns - 1) - len(line), 0)
        self._stream.write("\r" + line + " " * pad)
        self._stream.flush()
        self._drawn = len(line)

    def _columns(self) -> int:
        # The width of the terminal the bar is drawn on (stdout may be a pipe or a file).
        try:
            return int(os.environ["COLUMNS"])
        except (KeyError, ValueError):
            pass
        try:
            columns = os.get_terminal_size(self._stream.fileno()).columns
        except (OSError, ValueError, AttributeError):
            columns = 0
        # A terminal that does not know its size says 0.
        return columns or shutil.get_terminal_size((80, 24)).columns or 80

    def __call__(self, counts: Mapping[str, int]) -> None:
        self.update(Snapshot(counts))

    def close(self, counts: Mapping[str, int]) -> None:
        """Draw the final counts and end the line."""
        self.update(Snapshot(counts), force=True)
        self._stream.write("\n")
        self._stream.flush()

    def clear(self) -> None:
        """Erase the bar (before printing something else on its line)."""
        if self._drawn:
            self._stream.write("\r" + " " * self._drawn + "\r")
            self._stream.flush()
            self._drawn = 0


__all__ = ["ProgressBar", "Snapshot", "render"]
