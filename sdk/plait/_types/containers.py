"""Collections and maps: `list[T]` and `dict[str, T]`, built from their element's converter."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from plait._types.core import Conv, Literal, LiteralType, MismatchError, bad, bad_lit, describe


def list_conv(elem: Conv) -> Conv:
    """`list[T]` (a tuple is accepted); `--xs 1,2,3` or JSON on the command line."""
    lt = LiteralType(collection_type=elem.lt)
    efill, eto, efrom, eparse = elem.fill, elem.to_py, elem.from_json, elem.parse

    def fill(v: Any, lit: Literal) -> None:
        if not isinstance(v, (list, tuple)):
            raise bad(lt, v)
        coll = lit.collection
        coll.SetInParent()
        add = coll.literals.add
        try:
            for x in v:
                efill(x, add())
        except MismatchError as e:
            e.path.append(f"[{len(coll.literals) - 1}]")
            raise

    def to_py(lit: Literal) -> Any:
        if lit.WhichOneof("value") != "collection":
            raise bad_lit(lt, lit)
        lits = lit.collection.literals
        try:
            return [eto(x) for x in lits]
        except MismatchError as e:
            # Found again only on the error path, so the happy path stays a comprehension.
            for i, x in enumerate(lits):
                try:
                    eto(x)
                except MismatchError:
                    e.path.append(f"[{i}]")
                    break
            raise

    def from_json(v: Any) -> list[Any]:
        if not isinstance(v, list):
            raise ValueError(f"expected a JSON array, got {describe(v)}")
        return [efrom(x) for x in v]

    def parse(text: str) -> list[Any]:
        t = text.strip()
        if t.startswith("["):
            return from_json(json.loads(t))
        # Convenience for the command line: `--xs 1,2,3`.
        return [eparse(x) for x in t.split(",")] if t else []

    return Conv(lt, fill, to_py, lambda v: isinstance(v, list), from_json, parse=parse)


def map_conv(value: Conv) -> Conv:
    """`dict[str, T]`: keys must be str; JSON on the command line."""
    lt = LiteralType(map_value_type=value.lt)
    vfill, vto, vfrom = value.fill, value.to_py, value.from_json

    def fill(v: Any, lit: Literal) -> None:
        if not isinstance(v, Mapping):
            raise bad(lt, v)
        m = lit.map
        m.SetInParent()
        entries = m.literals
        for k, x in v.items():
            if type(k) is not str and not isinstance(k, str):
                raise bad(lt, v, f"key {k!r} is not a str")
            try:
                vfill(x, entries[k])
            except MismatchError as e:
                e.path.append(f"[{k!r}]")
                raise

    def to_py(lit: Literal) -> Any:
        if lit.WhichOneof("value") != "map":
            raise bad_lit(lt, lit)
        out = {}
        for k, x in lit.map.literals.items():
            try:
                out[k] = vto(x)
            except MismatchError as e:
                e.path.append(f"[{k!r}]")
                raise
        return out

    def from_json(v: Any) -> dict[str, Any]:
        if not isinstance(v, dict):
            raise ValueError(f"expected a JSON object, got {describe(v)}")
        return {k: vfrom(x) for k, x in v.items()}

    return Conv(lt, fill, to_py, lambda v: isinstance(v, dict), from_json)
