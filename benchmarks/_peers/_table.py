"""The side-by-side table: plait embedded, flytekit and the peers on each workload, with each
one's wall and CPU time as a multiple of plait's."""

from __future__ import annotations

import textwrap
from typing import Any

from benchmarks._peers import ONE_TASK, PEERS

MIB = 1024 * 1024


def _fmt(v: float | None, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def _plait_rows(results: list[dict[str, Any]], workloads: list[str]) -> dict[str, dict[str, Any]]:
    """plait embedded's figures for each workload (one-task: the start-up run's)."""
    out: dict[str, dict[str, Any]] = {}
    for r in results:
        if r.get("mode") == "embedded" and r.get("workload") in workloads:
            out[r["workload"]] = {**r, "engine": "plait embedded"}
        elif r.get("mode") == "startup" and r.get("ok") and ONE_TASK in workloads:
            out[ONE_TASK] = {"engine": "plait (`plait run`)", "workload": ONE_TASK, "ok": True,
                             "status": "ok", "wall_s": r.get("run_one_task_s"),
                             "cpu_s": r.get("run_one_task_cpu_s")}  # fmt: skip
    return out


def _ratio(r: dict[str, Any], base: dict[str, Any] | None, key: str) -> float | None:
    if base is None or not base.get("ok") or not r.get("ok"):
        return None
    mine, theirs = r.get(key), base.get(key)
    return mine / theirs if mine is not None and theirs else None


def rows(results: list[dict[str, Any]], peer_rows: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    """One line per (workload, engine): plait embedded first, then flytekit and the peers."""
    workloads = list(dict.fromkeys(r["workload"] for r in peer_rows))
    plait = _plait_rows(results, workloads)
    flyte = {r["workload"]: {**r, "engine": "flytekit (local)"} for r in results
             if r.get("mode") == "flytekit" and r["workload"] in workloads}  # fmt: skip
    out: list[tuple[str, ...]] = []
    for wl in workloads:
        base = plait.get(wl)
        group = [x for x in (base, flyte.get(wl)) if x is not None]
        group += [r for r in peer_rows if r["workload"] == wl]
        for r in group:
            rss = r.get("peak_rss_bytes")
            out.append((
                wl, r.get("engine", r.get("mode", "?")), _fmt(r.get("wall_s"), ".2f"),
                _fmt(r.get("cpu_s"), ".2f"), _fmt(rss / MIB if rss else None, ".0f"),
                _fmt(r.get("start_s"), ".2f"), _fmt(_ratio(r, base, "wall_s"), ".1f"),
                _fmt(_ratio(r, base, "cpu_s"), ".1f"), r.get("status", ""),
            ))  # fmt: skip
    return out


HEAD = ("workload", "engine", "wall s", "CPU s", "peak MiB", "of it start s", "wall / plait",
        "CPU / plait", "status")  # fmt: skip


def table(results: list[dict[str, Any]], peer_rows: list[dict[str, Any]]) -> str:
    """The fixed-width table (empty when no peer ran)."""
    body = rows(results, peer_rows)
    if not body:
        return ""
    widths = [max(len(h), *(len(row[i]) for row in body)) for i, h in enumerate(HEAD)]
    left = {0, 1, len(HEAD) - 1}

    def line(cells: tuple[str, ...]) -> str:
        pairs = enumerate(zip(cells, widths, strict=True))
        return "| " + " | ".join(c.ljust(w) if i in left else c.rjust(w)
                                 for i, (c, w) in pairs) + " |"  # fmt: skip

    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(HEAD), sep, *(line(r) for r in body)])


def notes(peer_rows: list[dict[str, Any]]) -> str:
    """What each column means and how each peer ran."""
    lines = [
        "wall / plait, CPU / plait: the engine's figure over plait embedded's on the same "
        "workload (> 1: plait is faster).",
        "wall: imports excluded, the engine's start-up (Ray's cluster, DBOS's launch, "
        "Prefect's API server on the first flow run) included; one-task: the whole fresh "
        "process, best of several, as `plait run`'s.",
        "CPU: every process of the run's tree (servers, raylets, workers; DBOS's PostgreSQL "
        "server too), its imports excluded (one-task: included). peak MiB: plait, flytekit: "
        "the process's peak RSS; peers: the largest sum of the tree's PSS, sampled every "
        "0.5 s. of it start s: the engine's start-up, part of wall (Prefect: -, its server "
        "starts inside the first flow call).",
        "n/a: a workload with no natural form on that peer (below).",
    ]
    names = list(dict.fromkeys(r["mode"] for r in peer_rows))
    for name in names:
        peer = PEERS[name]
        req = next((r["requirement"] for r in peer_rows if r["mode"] == name), peer.requirement)
        lines.append(f"{name} ({req}): {peer.config}.")
        if peer.not_written:
            lines.append(f"n/a on {name}: {peer.not_written}.")
    return "\n".join(
        textwrap.fill(ln, 100, subsequent_indent="  ", break_on_hyphens=False) for ln in lines
    )
