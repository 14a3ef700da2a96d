"""A dynamic body's spec in wire form is exactly the spec the general path builds."""

from __future__ import annotations

from typing import Any

import pytest
from plait import _dynamic, _dynamic_wire
from plaitidl.core.v1 import dynamic_job_pb2

from tests.workflows import wire_shapes as w


def _general(task: Any, inputs: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Any:
    with monkeypatch.context() as m:
        m.setattr(_dynamic_wire.CallEncoder, "encode", lambda *a: None)
        m.setattr(_dynamic, "_wire_outputs", lambda *a: None)
        return _dynamic.build_spec(task, inputs)


@pytest.mark.parametrize(
    "task", [w.every_value, w.one_promise, w.plain_list, w.two_outputs, w.no_outputs]
)
def test_wire_spec_equals_the_general_one(task: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    fast = _dynamic.build_spec(task, {"n": 4})
    slow = _general(task, {"n": 4}, monkeypatch)
    assert isinstance(fast, dynamic_job_pb2.DynamicJobSpec)
    assert fast == slow
    assert fast.SerializeToString(deterministic=True) == slow.SerializeToString(deterministic=True)


def test_the_common_calls_take_the_wire_path(monkeypatch: pytest.MonkeyPatch) -> None:
    encoded: list[bytes | None] = []
    real = _dynamic_wire.CallEncoder.encode

    def spy(self: Any, *args: Any) -> bytes | None:
        out = real(self, *args)
        encoded.append(out)
        return out

    monkeypatch.setattr(_dynamic_wire.CallEncoder, "encode", spy)
    spec = _dynamic.build_spec(w.every_value, {"n": 3})
    # Scalars of the exact type and same-typed promises are encoded; a conversion (an int
    # for a float), a union or a list of promises take the general path.
    assert sum(e is not None for e in encoded) >= 8
    assert sum(e is None for e in encoded) >= 3
    assert len(spec.nodes) == len(encoded) + 1  # the conditional is built by the general path


def test_values_that_do_not_fit_still_fail_with_the_general_message() -> None:
    from plait import PlaitTypeError, dynamic

    @dynamic
    def bad(n: int) -> int:
        return w.scalars(i="x", f=0.0, s="", b=True)  # type: ignore[arg-type]

    with pytest.raises(PlaitTypeError, match="input 'i'"):
        _dynamic.build_spec(bad, {"n": 1})

    @dynamic
    def too_big(n: int) -> int:
        return w.scalars(i=1 << 64, f=0.0, s="", b=True)

    with pytest.raises(PlaitTypeError, match="out of range"):
        _dynamic.build_spec(too_big, {"n": 1})
