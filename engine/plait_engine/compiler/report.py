"""Collecting violations and raising them once, bounded in number and size.

A caller may send a workflow with 10,000 mistakes or a 10,000-character name; the error it gets
back must still fit in a status: at most `MAX_VIOLATIONS` violations (the last says how many
more there were), each field path and description trimmed, the message naming the first.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NoReturn, Protocol

from plait_engine.compiler.limits import MAX_VIOLATIONS
from plait_engine.compiler.validation import Problem
from plait_engine.errors import FieldViolation, InvalidArgument

__all__ = ["Location", "Reporter", "bounded", "raise_problems"]

_MAX_FIELD = 300
_MAX_DESCRIPTION = 1000
_MAX_SUBJECT = 300


class Location(Protocol):
    """Where violations of a graph are reported.

    A graph the request contains reports at ``field_prefix + field``; a graph the request only
    references (a registered subworkflow) folds every violation into `fold_field`, the field
    that references it, with the inner path in the description.
    """

    field_prefix: str
    desc_prefix: str
    fold_field: str | None


# Control characters from a caller's names would break logs and terminals: shown escaped.
_ESCAPES = {c: f"\\x{c:02x}" for c in (*range(32), 127)}


def _trim(text: str, limit: int) -> str:
    if len(text) > limit:
        text = f"{text[:limit]}... ({len(text)} characters)"
    return text.translate(_ESCAPES)


def _summary(subject: str, first: FieldViolation, total: int) -> str:
    more = total - 1
    tail = f" (and {more} more violation{'s' if more > 1 else ''})" if more else ""
    subject = _trim(subject, _MAX_SUBJECT)
    return f"{subject} is invalid: {first.field}: {first.description}{tail}"


def bounded(violations: Iterable[FieldViolation]) -> list[FieldViolation]:
    """Distinct violations, trimmed, at most `MAX_VIOLATIONS` of them.

    Args:
        violations: Everything found, in order.

    Returns:
        The violations to report; when some are left out, the last one names the first left
        out and says how many there are.
    """
    unique = list(dict.fromkeys(violations))
    out = [
        FieldViolation(_trim(v.field, _MAX_FIELD), _trim(v.description, _MAX_DESCRIPTION))
        for v in unique[:MAX_VIOLATIONS]
    ]
    if len(unique) > MAX_VIOLATIONS:
        left = len(unique) - MAX_VIOLATIONS + 1
        out[-1] = FieldViolation(out[-1].field, f"... and {left} more violations (not listed)")
    return out


def _raise(subject: str, violations: Sequence[FieldViolation]) -> NoReturn:
    unique = list(dict.fromkeys(violations))
    shown = bounded(unique)
    raise InvalidArgument(_summary(subject, shown[0], len(unique)), shown)


def raise_problems(subject: str, problems: Sequence[Problem]) -> None:
    """Raise `InvalidArgument` for `problems`, if any.

    Args:
        subject: What was checked (``task default/development/t/v1``), for the message.
        problems: ``(field, description)`` pairs.

    Raises:
        InvalidArgument: With the bounded violations; the message names the first.
    """
    if problems:
        _raise(subject, [FieldViolation(f, d) for f, d in problems])


class Reporter:
    """Collects the violations of one compilation."""

    def __init__(self) -> None:
        self.violations: list[FieldViolation] = []

    def err(self, at: Location | None, field: str, desc: str) -> None:
        """Record a violation at `field` of the graph `at` (None: of the request itself)."""
        if at is None:
            self.violations.append(FieldViolation(field, desc))
        elif at.fold_field is not None:
            self.violations.append(
                FieldViolation(at.fold_field, f"{at.desc_prefix}{field}: {desc}")
            )
        else:
            self.violations.append(FieldViolation(at.field_prefix + field, at.desc_prefix + desc))

    def errs(self, at: Location | None, problems: Iterable[Problem], context: str = "") -> None:
        """Record ``(field, description)`` pairs, each description after `context`."""
        for f, d in problems:
            self.err(at, f, context + d)

    def finish(self, subject: str) -> None:
        """Raise what was recorded, if anything.

        Raises:
            InvalidArgument: With the bounded violations; the message names the first.
        """
        if self.violations:
            _raise(subject, self.violations)
