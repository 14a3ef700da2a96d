"""Compiled specs are stored compressed; specs stored before (uncompressed) still read."""

from __future__ import annotations

import asyncio
from pathlib import Path

from plait_engine.blob import LocalObjectStore, Payloads
from plait_engine.blob.payloads import deflate, inflate
from plaitidl.core.v1 import dynamic_job_pb2, workflow_pb2


def _spec(n: int) -> bytes:
    spec = dynamic_job_pb2.DynamicJobSpec()
    for i in range(n):
        spec.nodes.append(workflow_pb2.Node(id=f"n{i}"))
    return spec.SerializeToString()


def test_a_fan_out_spec_shrinks_and_comes_back_whole() -> None:
    raw = _spec(10_000)
    stored = deflate(raw)
    assert len(stored) * 3 < len(raw)
    assert inflate(stored) == raw
    assert inflate(raw) == raw  # a row written before specs were compressed
    assert inflate(b"") == b""


def test_load_spec_reads_inline_and_blob_payloads(tmp_path: Path) -> None:
    payloads = Payloads(LocalObjectStore(tmp_path), threshold=1024)
    raw = _spec(50_000)
    stored, pending = payloads.pack(deflate(raw), "executions", "p", "d", "x", "n0", "spec")
    assert pending is not None  # above the threshold: a pointer
    payloads.write([pending])
    small = _spec(3)
    inline, none = payloads.pack(deflate(small), "executions", "p", "d", "x", "n1", "spec")
    assert none is None

    async def read() -> list[bytes]:
        return [await payloads.load_spec(s) for s in (stored, inline, small)]

    assert asyncio.run(read()) == [raw, small, small]
