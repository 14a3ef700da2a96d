"""What the Flyte boundary refuses, and the notes it leaves about what it ignores."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from plait._errors import PlaitError


@dataclass(frozen=True)
class Refusal:
    """One field of a Flyte entity that plait has no equivalent for.

    Attributes:
        entity: The entity, e.g. ``task 'wf.seeds.split'``.
        field: The field path inside it, e.g. ``template.k8s_pod``.
        why: What the field does and why plait cannot honour it.
    """

    entity: str
    field: str
    why: str

    def __str__(self) -> str:
        return f"{self.entity}: {self.field}: {self.why}"


class FlyteRefusedError(PlaitError):
    """Flyte entities use fields plait has no equivalent for; nothing was registered or run.

    Attributes:
        refusals: Every refused field, in the order met.
    """

    def __init__(self, refusals: Sequence[Refusal]) -> None:
        self.refusals = list(refusals)
        more = len(self.refusals) - 1
        tail = f" (and {more} more: " + "; ".join(map(str, self.refusals[1:])) + ")" if more else ""
        super().__init__(f"refused: {self.refusals[0]}{tail}")
