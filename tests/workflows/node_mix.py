"""The Python half of the Node.js example (examples/node): tasks the Node generator and the
Node client's workflow call, served by `plait worker tests/workflows/node_mix.py`.

The names are fixed so that the Node code finds them with `RegistryService.GetTask`.
"""

from __future__ import annotations

from plait import task


@task(name="node_mix.square")
def square(x: int) -> int:
    """x squared; the Node generator `node_mix.fan_out` fans out to it."""
    return x * x


@task(name="node_mix.total")
def total(xs: list[int]) -> int:
    """The sum of a list."""
    return sum(xs)
