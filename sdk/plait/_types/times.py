"""datetime.datetime (a Timestamp, UTC) and datetime.timedelta (a Duration)."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from plait._types.core import ST, Conv, Literal, bad, bad_lit, describe, simple

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
# google.protobuf.Duration's documented range (about 10,000 years); beyond it JSON refuses it.
_MAX_DURATION_SECONDS = 315_576_000_000


def parse_datetime(text: str) -> dt.datetime:
    """ISO 8601; a naive time means UTC."""
    d = dt.datetime.fromisoformat(text.strip())
    return d if d.tzinfo is not None else d.replace(tzinfo=dt.UTC)


def datetime_conv() -> Conv:
    """datetime: naive values are taken as UTC; values come back aware, in UTC."""
    lt = simple(ST.SIMPLE_TYPE_DATETIME)

    def fill(v: Any, lit: Literal) -> None:
        if not isinstance(v, dt.datetime):
            raise bad(lt, v)
        if v.tzinfo is None or v.utcoffset() is None:
            v = v.replace(tzinfo=dt.UTC)
        # Integer arithmetic: going through float timestamps would lose microseconds.
        delta = v - _EPOCH
        ts = lit.scalar.primitive.datetime
        ts.seconds = delta.days * 86400 + delta.seconds
        ts.nanos = delta.microseconds * 1000

    def to_py(lit: Literal) -> Any:
        p = lit.scalar.primitive
        if p.WhichOneof("value") != "datetime":
            raise bad_lit(lt, lit)
        ts = p.datetime
        try:
            return _EPOCH + dt.timedelta(seconds=ts.seconds, microseconds=ts.nanos // 1000)
        except OverflowError:
            raise bad_lit(lt, lit, "out of Python's datetime range") from None

    def from_json(v: Any) -> dt.datetime:
        if not isinstance(v, str):
            raise ValueError(f"expected an ISO 8601 string, got {describe(v)}")
        return parse_datetime(v)

    return Conv(
        lt, fill, to_py, lambda v: isinstance(v, dt.datetime), from_json, parse=parse_datetime
    )


_DURATION_UNITS = {
    "w": 604800.0,
    "d": 86400.0,
    "h": 3600.0,
    "m": 60.0,
    "s": 1.0,
    "ms": 1e-3,
    "us": 1e-6,
    "µs": 1e-6,
}
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ms|us|µs|w|d|h|m|s)")
_DURATION_CLOCK = re.compile(r"(\d+):([0-5]?\d):([0-5]?\d(?:\.\d*)?)")
_DURATION_ISO = re.compile(
    r"P(?:(\d+(?:\.\d*)?)W)?(?:(\d+(?:\.\d*)?)D)?"
    r"(?:T(?:(\d+(?:\.\d*)?)H)?(?:(\d+(?:\.\d*)?)M)?(?:(\d+(?:\.\d*)?)S)?)?",
    re.IGNORECASE,
)
_ISO_WEIGHTS = (604800.0, 86400.0, 3600.0, 60.0, 1.0)


def _unit_seconds(t: str) -> float:
    seconds = 0.0
    pos = 0
    for part in _DURATION_PART.finditer(t.lower()):
        if part.start() != pos:
            break
        seconds += float(part[1]) * _DURATION_UNITS[part[2]]
        pos = part.end()
    if pos != len(t) or not t:
        raise ValueError("expected seconds, a duration like 1h30m or 90s, or HH:MM:SS")
    return seconds


def parse_timedelta(text: str) -> dt.timedelta:
    """Parse seconds ("90", "1.5"), "1h30m", "1d2h3m4.5s", "500ms", "01:30:00" or "PT1H30M"."""
    t = text.strip()
    try:
        return dt.timedelta(seconds=float(t))
    except ValueError:
        pass
    sign = -1.0 if t.startswith("-") else 1.0
    t = t.lstrip("+-").replace(" ", "")
    if m := _DURATION_CLOCK.fullmatch(t):
        seconds = int(m[1]) * 3600 + int(m[2]) * 60 + float(m[3])
    elif (m := _DURATION_ISO.fullmatch(t)) and any(m.groups()):
        seconds = sum(float(g) * w for g, w in zip(m.groups(), _ISO_WEIGHTS, strict=True) if g)
    else:
        seconds = _unit_seconds(t)
    return dt.timedelta(seconds=sign * seconds)


def timedelta_conv() -> Conv:
    """timedelta, within a Duration's range (about 10,000 years either way)."""
    lt = simple(ST.SIMPLE_TYPE_DURATION)

    def fill(v: Any, lit: Literal) -> None:
        if not isinstance(v, dt.timedelta):
            raise bad(lt, v)
        micros = (v.days * 86400 + v.seconds) * 1_000_000 + v.microseconds
        # Duration wants seconds and nanos of the same sign, truncated toward zero.
        secs, rest = divmod(abs(micros), 1_000_000)
        if secs > _MAX_DURATION_SECONDS:
            raise bad(lt, v, "out of range for a Duration (about 10,000 years)")
        d = lit.scalar.primitive.duration
        if micros < 0:
            d.seconds, d.nanos = -secs, -rest * 1000
        else:
            d.seconds, d.nanos = secs, rest * 1000

    def to_py(lit: Literal) -> Any:
        p = lit.scalar.primitive
        if p.WhichOneof("value") != "duration":
            raise bad_lit(lt, lit)
        d = p.duration
        micros = d.nanos // 1000 if d.nanos >= 0 else -(-d.nanos // 1000)
        try:
            return dt.timedelta(seconds=d.seconds, microseconds=micros)
        except OverflowError:
            raise bad_lit(lt, lit, "out of Python's timedelta range") from None

    def from_json(v: Any) -> dt.timedelta:
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return dt.timedelta(seconds=v)
        if isinstance(v, str):
            return parse_timedelta(v)
        raise ValueError(f"expected seconds or a duration string, got {describe(v)}")

    return Conv(
        lt, fill, to_py, lambda v: isinstance(v, dt.timedelta), from_json, parse=parse_timedelta
    )
