"""The state one translation carries: where it is, what it refused, what it ignored."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

from google.protobuf.message import Message

from plait.flyte._errors import FlyteRefusedError, Refusal


@dataclass
class Context:
    """Collects refusals and notices while a translation walks Flyte messages.

    A translation never stops at the first refused field: it records every one, so a user sees
    all of them at once, and `raise_refusals` ends it. Notices are fields that change nothing a
    local process computes (an image's resources, pod labels): they are reported, not refused.
    """

    entity: str = ""
    refusals: list[Refusal] = field(default_factory=list)
    notices: list[Refusal] = field(default_factory=list)

    @contextmanager
    def at(self, entity: str) -> Iterator[None]:
        """Attribute what happens inside to `entity`."""
        outer, self.entity = self.entity, entity
        try:
            yield
        finally:
            self.entity = outer

    def refuse(self, path: str, why: str) -> None:
        """Record a field plait cannot honour."""
        self.refusals.append(Refusal(self.entity, path, why))

    def notice(self, path: str, why: str) -> None:
        """Record a field that is ignored because it changes nothing here."""
        self.notices.append(Refusal(self.entity, path, why))

    def raise_refusals(self) -> None:
        """Raise `FlyteRefusedError` when anything was refused."""
        if self.refusals:
            raise FlyteRefusedError(self.refusals)


def is_set(value: object) -> bool:
    """Whether a field value means anything: empty messages and zero values do not."""
    if isinstance(value, Message):
        return value.ByteSize() > 0
    if isinstance(value, str | bytes | int | float | bool):
        return bool(value)
    return len(value) > 0  # type: ignore[arg-type]


def check_fields(
    ctx: Context,
    msg: Message,
    path: str,
    handled: set[str],
    *,
    notices: Mapping[str, str] | None = None,
    refusals: Mapping[str, str] | None = None,
) -> None:
    """Refuse every set field of `msg` that is not `handled` (or only worth a notice).

    Unknown fields are refused too: a field added to flyteidl later is never dropped silently.
    """
    for fd, value in msg.ListFields():
        name = fd.name
        if name in handled or not is_set(value):
            continue
        where = f"{path}.{name}" if path else name
        if notices and name in notices:
            ctx.notice(where, notices[name])
        else:
            ctx.refuse(where, (refusals or {}).get(name, "has no plait equivalent"))
