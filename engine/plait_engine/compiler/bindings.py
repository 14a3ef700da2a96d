"""Bindings: promises (with attribute paths), literals, lists and maps, union variants.

A binding is checked against the type of the slot it feeds; `Site` carries where it is and
collects its problems, which are reported with the binding's context (``node 'a' input 'x'``).
"""

from __future__ import annotations

from plaitidl.core.v1 import literals_pb2, types_pb2

from plait_engine.compiler.limits import Limits
from plait_engine.compiler.report import Reporter
from plait_engine.compiler.scope import Site, names
from plait_engine.compiler.validation import literal_depth_problem, type_depth, type_depth_problem
from plait_engine.ids import START_NODE
from plait_engine.type_check import (
    TypeRef,
    castable_ref,
    is_variant_of,
    literal_problem,
    scalar_literal_type,
    type_str,
)

__all__ = ["BindingChecker"]

# A list or map built from bindings: known, never a scalar (branch conditions refuse it).
_CONTAINER = types_pb2.LiteralType()


class BindingChecker:
    """Type-checks bindings and records the sibling nodes they depend on."""

    def __init__(self, report: Reporter, limits: Limits) -> None:
        self.report = report
        self.limits = limits
        self._depths: dict[bytes, int] = {}

    def _type_depth(self, t: TypeRef) -> int:
        depth = self._depths.get(t.key)
        if depth is None:
            depth = self._depths[t.key] = type_depth(t.pb)
        return depth

    def check(
        self, site: Site, bd: literals_pb2.BindingData, t: TypeRef | None, field: str
    ) -> TypeRef | None:
        """Check one binding against its declared type (None: unknown, only walk it).

        With `site.infer`, returns the binding's own type when it is evident (a promise, a
        scalar literal or a union variant), which branch conditions use.
        """
        got = self.walk(site, bd, t, field, check_variant=True, level=0)
        if site.problems:
            ctx = site.ctx
            for f, d in site.problems:
                self.report.err(site.g, f, f"{ctx}: {d}")
        return got

    def walk(
        self,
        s: Site,
        bd: literals_pb2.BindingData,
        t: TypeRef | None,
        field: str,
        *,
        check_variant: bool,
        level: int,
    ) -> TypeRef | None:
        """Check `bd` at `level` lists or maps deep; returns its evident type (see `check`)."""
        uv: TypeRef | None = None
        if check_variant and bd.HasField("union_variant"):
            uv, t = self._variant(s, bd.union_variant, t, field)
            level += 1  # the value is wrapped in a union literal
        kind = bd.WhichOneof("value")
        if kind == "promise":
            src = self._promise(s, bd.promise, t, field, level)
            return uv or src
        if kind == "literal":
            return self._literal(s, bd.literal, t, uv, field, level)
        if kind in ("collection", "map"):
            if level >= self.limits.max_literal_depth:
                s.problems.append(
                    (
                        field,
                        f"bindings are nested over {self.limits.max_literal_depth} levels deep, "
                        "the limit for values",
                    )
                )
                return None
            self._container(s, bd, t, field, kind, level)
            return uv or TypeRef(_CONTAINER)
        s.problems.append((field, "the binding has no value"))
        return None

    def _variant(
        self, s: Site, variant: types_pb2.LiteralType, t: TypeRef | None, field: str
    ) -> tuple[TypeRef | None, TypeRef | None]:
        deep = type_depth_problem(variant, self.limits.max_type_depth)
        if deep is not None:
            s.problems.append((field, f"union_variant: {deep}"))
            return None, None
        uv = TypeRef(variant)
        if t is None:
            return uv, None
        if t.pb.WhichOneof("type") != "union_type":
            s.problems.append((field, f"union_variant is set but {type_str(t.pb)} is not a union"))
            return uv, None  # reported once; checking the value too would only echo it
        if not is_variant_of(uv, t.pb):
            s.problems.append(
                (field, f"union_variant {type_str(uv.pb)} is not a variant of {type_str(t.pb)}")
            )
            return uv, None
        return uv, uv

    def _promise(
        self,
        s: Site,
        p: literals_pb2.OutputReference,
        t: TypeRef | None,
        field: str,
        level: int,
    ) -> TypeRef | None:
        src = self.promise_type(s, p, field)
        if src is None:
            return None
        if t is not None and not castable_ref(src, t):
            s.problems.append(
                (
                    field,
                    f"expected {type_str(t.pb)}, got {type_str(src.pb)} from {p.node_id}.{p.var}",
                )
            )
        elif level and level + self._type_depth(src) > self.limits.max_literal_depth:
            s.problems.append(
                (
                    field,
                    f"{p.node_id}.{p.var} ({type_str(src.pb)}) inside {level} levels of bindings "
                    f"is nested over the limit of {self.limits.max_literal_depth}",
                )
            )
        return src

    def _literal(
        self,
        s: Site,
        lit: literals_pb2.Literal,
        t: TypeRef | None,
        uv: TypeRef | None,
        field: str,
        level: int,
    ) -> TypeRef | None:
        deep = literal_depth_problem(lit, self.limits.max_literal_depth, level)
        if deep is not None:
            s.problems.append((field, deep))
            return uv
        size = lit.ByteSize()
        if size > self.limits.max_literal_bytes:
            self.report.err(
                s.g,
                field,
                f"{s.ctx}: inline literal is {size} bytes, over the limit of "
                f"{self.limits.max_literal_bytes} bytes; pass large values by reference",
            )
        elif t is not None:
            prob = literal_problem(lit, t.pb)
            if prob is not None:
                s.problems.append((field, prob))
        if uv is not None or not s.infer:
            return uv
        st = scalar_literal_type(lit)
        return TypeRef(st) if st is not None else TypeRef(_CONTAINER)

    def _container(
        self,
        s: Site,
        bd: literals_pb2.BindingData,
        t: TypeRef | None,
        field: str,
        kind: str,
        level: int,
    ) -> None:
        want = "collection_type" if kind == "collection" else "map_value_type"
        elem: TypeRef | None = None
        if t is not None:
            tk = t.pb.WhichOneof("type")
            if tk == "union_type":
                self._union(s, bd, t, field, want, level)
                return
            if tk != want:
                noun = "a list" if kind == "collection" else "a map"
                s.problems.append((field, f"expected {type_str(t.pb)}, got {noun} of bindings"))
            else:
                elem = TypeRef(getattr(t.pb, want))
        if kind == "collection":
            for j, el in enumerate(bd.collection.bindings):
                self.walk(s, el, elem, f"{field}[{j}]", check_variant=True, level=level + 1)
        else:
            for k in sorted(bd.map.bindings):
                self.walk(
                    s,
                    bd.map.bindings[k],
                    elem,
                    f'{field}["{k}"]',
                    check_variant=True,
                    level=level + 1,
                )

    def _union(
        self, s: Site, bd: literals_pb2.BindingData, t: TypeRef, field: str, want: str, level: int
    ) -> None:
        candidates = [v for v in t.pb.union_type.variants if v.WhichOneof("type") == want]
        if not candidates:
            noun = "a list" if want == "collection_type" else "a map"
            s.problems.append((field, f"expected {type_str(t.pb)}, got {noun} of bindings"))
            self.walk(s.sibling(), bd, None, field, check_variant=False, level=level)
            return
        first: list[tuple[str, str]] | None = None
        for v in candidates:
            sub = s.sibling()
            self.walk(sub, bd, TypeRef(v), field, check_variant=False, level=level)
            if not sub.problems:
                return
            first = sub.problems if first is None else first
        assert first is not None
        s.problems.extend(first)

    def promise_type(self, s: Site, p: literals_pb2.OutputReference, field: str) -> TypeRef | None:
        """The type a promise reads (after its attribute path), recording the dependency.

        Returns None when the promise names nothing (reported) or its node is unresolved.
        """
        g = s.g
        nid = p.node_id
        if nid == START_NODE:
            outs: dict[str, TypeRef] | None = g.inputs
            if p.var not in g.inputs:
                self.report.err(
                    g,
                    field,
                    f"{s.ctx}: promise {START_NODE}.{p.var} names no {g.start_what[:-1]} "
                    f"(inputs: {names(g.inputs)})",
                )
                return None
        else:
            if nid not in g.outputs_of:
                self.report.err(g, field, f"{s.ctx}: promise refers to unknown node {nid!r}")
                return None
            s.deps.add(nid)
            outs = g.outputs_of[nid]
            if outs is None:
                return None  # the node's target is unresolved, reported there
            if p.var not in outs:
                hint = (
                    "; a branch node has only the outputs every case produces"
                    if nid in g.branch_ids
                    else ""
                )
                self.report.err(
                    g,
                    field,
                    f"{s.ctx}: node {nid!r} has no output {p.var!r} (outputs: {names(outs)}{hint})",
                )
                return None
        assert outs is not None
        t = outs[p.var]
        return self._attr_path(s, p, t, field) if p.attr_path else t

    def _attr_path(
        self, s: Site, p: literals_pb2.OutputReference, t: TypeRef, field: str
    ) -> TypeRef | None:
        cur = t.pb
        for k, step in enumerate(p.attr_path):
            sk = step.WhichOneof("value")
            ck = cur.WhichOneof("type")
            nxt: types_pb2.LiteralType | None = None
            if sk == "name" and ck == "record_type":
                nxt = next((f.type for f in cur.record_type.fields if f.name == step.name), None)
            elif sk == "name" and ck == "map_value_type":
                nxt = cur.map_value_type
            elif sk == "index" and ck == "collection_type" and step.index >= 0:
                nxt = cur.collection_type
            if nxt is None:
                what = (
                    repr(step.name)
                    if sk == "name"
                    else f"[{step.index}]"
                    if sk
                    else "an empty step"
                )
                self.report.err(
                    s.g,
                    field,
                    f"{s.ctx}: promise {p.node_id}.{p.var} attr_path[{k}]: cannot take {what} "
                    f"of {type_str(cur)}",
                )
                return None
            cur = nxt
        return TypeRef(cur)
