"""The bash generator `fan_out.sh`, used from a Python workflow through `ProcessTask`.

plait run examples/process/shell_workflow.py shell_fan_out --n 5     # [0, 1, 2, 3, 4]
"""

from pathlib import Path

from plait import ProcessTask, task, workflow

# The engine runs the script itself; it writes futures.pb, a DynamicJobSpec of n nodes.
fan_out = ProcessTask(
    "examples.process.fan_out",
    ["bash", str(Path(__file__).with_name("fan_out.sh")), "{{.input}}", "{{.outputPrefix}}"],
    inputs={"n": int},
    outputs={"out": list[int]},
    generator=True,
)


@task
def total(xs: list[int]) -> int:
    return sum(xs)


@workflow
def shell_fan_out(n: int) -> list[int]:
    out: list[int] = fan_out(n=n).out  # outputs are read by name
    return out


@workflow
def shell_sum(n: int) -> int:
    return total(xs=fan_out(n=n).out)
