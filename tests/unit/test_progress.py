"""The progress bar's frames: what fits a terminal, and a clean redraw."""

from __future__ import annotations

import io

import pytest
from plait._progress import ProgressBar, Snapshot, render

COUNTS = {
    "total": 2001, "succeeded": 1000, "skipped": 54, "running": 947, "queued": 3,
    "failed": 1, "cached": 2,
}  # fmt: skip


def test_queued_is_shown_apart_from_running_with_names() -> None:
    line = render(Snapshot(COUNTS, running=["split", "merge", "split"]), 200)
    assert line.startswith("[##########..........] 1054/2001 nodes done, 944 running, 3 queued")
    assert line.endswith("; running split x2, merge")


def test_building_phase_is_named() -> None:
    counts = {"total": 1, "running": 1}
    assert "building the graph of fan_out..." in render(Snapshot(counts, building=["fan_out"]), 120)


def test_why_nodes_wait_is_shown() -> None:
    reason = "no connected worker serves task default/development/t version v2"
    line = render(Snapshot({"total": 1, "running": 1, "queued": 1}, waiting=reason), 200)
    assert line.endswith(f"0 running, 1 queued, 0 failed, 0 cached; waiting: {reason}")


def test_every_frame_fits_the_terminal() -> None:
    snapshot = Snapshot(COUNTS, running=[f"task_{i}" for i in range(20)])
    for columns in range(5, 200):
        assert len(render(snapshot, columns)) <= columns - 1
    assert render(snapshot, 50) == "1054/2001 done, 944 run, 3 queued, 1 failed"


def test_a_shorter_frame_leaves_no_stray_characters(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "100")
    out = io.StringIO()
    bar = ProgressBar(out)
    bar.update(Snapshot(COUNTS, running=["a_long_task_name"]), force=True)
    first = out.getvalue()
    bar.update(Snapshot({"total": 1, "succeeded": 1}), force=True)
    second = out.getvalue()[len(first) :]
    frame = render(Snapshot({"total": 1, "succeeded": 1}), 100)
    assert len(frame) < len(first) - 1
    # Redrawn from the line's start, padded with spaces over what the longer frame drew.
    assert second == "\r" + frame + " " * (len(first) - 1 - len(frame))
    bar.close({"total": 1, "succeeded": 1})
    assert out.getvalue().endswith("\n")
