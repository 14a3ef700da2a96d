// Values (Literals) rendered by their type, and JSON typed into a form turned into Literals.
import { create, fromBinary, type JsonObject, type JsonValue } from "@bufbuild/protobuf";
import { DurationSchema, timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { useState } from "preact/hooks";
import { data, errorText } from "./api";
import { durationText } from "./format";
import type { Variable } from "./gen/plaitidl/core/v1/interface_pb";
import {
  type Literal,
  type LiteralMap,
  LiteralSchema,
  type Primitive,
  type Scalar,
} from "./gen/plaitidl/core/v1/literals_pb";
import {
  BlobType_BlobDimensionality,
  type LiteralType,
  SimpleType,
} from "./gen/plaitidl/core/v1/types_pb";

const SHOWN_ITEMS = 50;

/** A type as the SDK writes it: `list[int]`, `dict[str, float]`, `int | None`. */
export function typeText(t: LiteralType | undefined): string {
  const v = t?.type;
  if (!v) return "?";
  switch (v.case) {
    case "simple":
      return simpleName(v.value);
    case "collectionType":
      return `list[${typeText(v.value)}]`;
    case "mapValueType":
      return `dict[str, ${typeText(v.value)}]`;
    case "blob":
      return v.value.dimensionality === BlobType_BlobDimensionality.MULTIPART
        ? "Directory"
        : "File";
    case "enumType":
      return `enum(${v.value.values.join(", ")})`;
    case "unionType":
      return v.value.variants.map(typeText).join(" | ");
    case "recordType":
      return v.value.name || `record(${v.value.fields.map((f) => f.name).join(", ")})`;
    default:
      return "?";
  }
}

function simpleName(s: SimpleType): string {
  const names: Record<number, string> = {
    [SimpleType.NONE]: "None",
    [SimpleType.INTEGER]: "int",
    [SimpleType.FLOAT]: "float",
    [SimpleType.STRING]: "str",
    [SimpleType.BOOLEAN]: "bool",
    [SimpleType.DATETIME]: "datetime",
    [SimpleType.DURATION]: "timedelta",
    [SimpleType.BINARY]: "bytes",
    [SimpleType.STRUCT]: "dict[str, Any]",
  };
  return names[s] ?? "?";
}

function primitiveText(p: Primitive): string {
  const v = p.value;
  switch (v.case) {
    case "integer":
      return v.value.toString();
    case "floatValue":
      return String(v.value);
    case "stringValue":
      return JSON.stringify(v.value);
    case "boolean":
      return v.value ? "true" : "false";
    case "datetime":
      return timestampDate(v.value).toISOString();
    case "duration":
      return durationText(v.value);
    default:
      return "?";
  }
}

/** A one-line text of a value (long ones cut). */
export function literalText(lit: Literal | undefined, max = 80): string {
  const text = literalTextFull(lit);
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

function scalarText(s: Scalar): string {
  const v = s.value;
  switch (v.case) {
    case "primitive":
      return primitiveText(v.value);
    case "blob":
      return v.value.uri;
    case "binary":
      return `<${v.value.value.length} bytes>`;
    case "noneValue":
      return "None";
    case "generic":
      return JSON.stringify(v.value);
    case "union":
      return literalTextFull(v.value.value);
    default:
      return "?";
  }
}

function literalTextFull(lit: Literal | undefined): string {
  const v = lit?.value;
  if (!v) return "";
  switch (v.case) {
    case "scalar":
      return scalarText(v.value);
    case "collection":
      return `[${v.value.literals
        .slice(0, 20)
        .map((l) => literalTextFull(l))
        .join(", ")}${v.value.literals.length > 20 ? ", …" : ""}]`;
    case "map":
      return `{${Object.entries(v.value.literals)
        .slice(0, 20)
        .map(([k, l]) => `${JSON.stringify(k)}: ${literalTextFull(l)}`)
        .join(", ")}}`;
    case "record":
      return `(${v.value.fields.map((f) => `${f.name}=${literalTextFull(f.value)}`).join(", ")})`;
    case "offloaded":
      return `<offloaded ${v.value.sizeBytes} bytes>`;
    default:
      return "?";
  }
}

function Offloaded({ lit }: { lit: Literal }) {
  const [loaded, setLoaded] = useState<Literal | undefined>();
  const [error, setError] = useState("");
  const [busy, setBusy] = useState(false);
  if (lit.value.case !== "offloaded") return null;
  const off = lit.value.value;
  if (loaded) return <LiteralView lit={loaded} type={off.type} />;
  const load = async () => {
    setBusy(true);
    try {
      const chunks: Uint8Array[] = [];
      for await (const part of data.readData({ uri: off.uri })) chunks.push(part.chunk);
      const all = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
      let at = 0;
      for (const c of chunks) {
        all.set(c, at);
        at += c.length;
      }
      setLoaded(fromBinary(LiteralSchema, all));
    } catch (err) {
      setError(errorText(err));
    } finally {
      setBusy(false);
    }
  };
  return (
    <span class="offloaded">
      offloaded value: {off.sizeBytes.toString()} bytes ({typeText(off.type)}){" "}
      <button type="button" disabled={busy} onClick={load}>
        load
      </button>
      {error && <span class="error-text"> {error}</span>}
    </span>
  );
}

function isScalar(l: Literal): boolean {
  const v = l.value;
  return v.case === "scalar" && v.value.value.case !== "generic" && v.value.value.case !== "union";
}

function Items({ items }: { items: Literal[] }) {
  const [all, setAll] = useState(false);
  if (items.every(isScalar)) {
    const shown = all ? items : items.slice(0, SHOWN_ITEMS * 4);
    return (
      <span class="lit-inline">
        <code>
          [{shown.map((l) => literalTextFull(l)).join(", ")}
          {shown.length < items.length ? ", …" : ""}]
        </code>{" "}
        <span class="muted">({items.length})</span>
        {shown.length < items.length && (
          <button type="button" class="link" onClick={() => setAll(true)}>
            {" "}
            show all
          </button>
        )}
      </span>
    );
  }
  const shown = all ? items : items.slice(0, SHOWN_ITEMS);
  return (
    <div class="lit-list">
      <span class="muted">list of {items.length}</span>
      <ol start={0}>
        {shown.map((l, i) => (
          // biome-ignore lint/suspicious/noArrayIndexKey: list positions are the identity
          <li key={i}>
            <LiteralView lit={l} />
          </li>
        ))}
      </ol>
      {!all && items.length > SHOWN_ITEMS && (
        <button type="button" class="link" onClick={() => setAll(true)}>
          show all {items.length}
        </button>
      )}
    </div>
  );
}

/** A value rendered by its shape: scalars inline, lists, maps and records as tables. */
export function LiteralView({ lit, type }: { lit: Literal | undefined; type?: LiteralType }) {
  const v = lit?.value;
  if (!lit || !v) return <span class="muted">(none)</span>;
  switch (v.case) {
    case "collection":
      return <Items items={v.value.literals} />;
    case "map":
      return (
        <table class="lit-table">
          <tbody>
            {Object.entries(v.value.literals).map(([k, l]) => (
              <tr key={k}>
                <th>{k}</th>
                <td>
                  <LiteralView lit={l} />
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      );
    case "record":
      return (
        <table class="lit-table">
          <tbody>
            {v.value.fields.map((f) => (
              <tr key={f.name}>
                <th>{f.name}</th>
                <td>
                  <LiteralView lit={f.value} />
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      );
    case "offloaded":
      return <Offloaded lit={lit} />;
    case "scalar": {
      const s = v.value.value;
      if (s.case === "blob") return <code class="blob">{s.value.uri}</code>;
      if (s.case === "union") return <LiteralView lit={s.value.value} type={s.value.type} />;
      if (s.case === "generic") return <pre class="json">{JSON.stringify(s.value, null, 2)}</pre>;
      return <code title={type ? typeText(type) : undefined}>{scalarText(v.value)}</code>;
    }
    default:
      return <span class="muted">?</span>;
  }
}

/** Named values (inputs or outputs) with their declared types. */
export function LiteralMapView({ map, vars }: { map: LiteralMap | undefined; vars?: Variable[] }) {
  const names = new Set(Object.keys(map?.literals ?? {}));
  const ordered = [
    ...(vars ?? []).map((v) => v.name).filter((n) => names.has(n)),
    ...[...names].filter((n) => !(vars ?? []).some((v) => v.name === n)).sort(),
  ];
  if (ordered.length === 0) return <p class="muted">none</p>;
  const typeOf = (n: string) => vars?.find((v) => v.name === n)?.type;
  return (
    <table class="values">
      <tbody>
        {ordered.map((n) => (
          <tr key={n}>
            <th>
              {n}
              {typeOf(n) && <span class="type">: {typeText(typeOf(n))}</span>}
            </th>
            <td>
              <LiteralView lit={map?.literals[n]} type={typeOf(n)} />
            </td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

// -- from JSON (the launch form) ---------------------------------------------------------

function prim(value: Primitive["value"]): Literal {
  return create(LiteralSchema, {
    value: { case: "scalar", value: { value: { case: "primitive", value: { value } } } },
  });
}

function none(): Literal {
  return create(LiteralSchema, {
    value: { case: "scalar", value: { value: { case: "noneValue", value: {} } } },
  });
}

const DURATION_PART = /(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)/g;

/** Seconds from `90`, `90s`, `1h30m`, `250ms`. */
export function parseDuration(text: string): number {
  const t = text.trim();
  if (/^\d+(\.\d+)?$/.test(t)) return Number(t);
  const unit: Record<string, number> = { ms: 0.001, s: 1, m: 60, h: 3600, d: 86400 };
  let total = 0;
  let matched = "";
  for (const m of t.matchAll(DURATION_PART)) {
    total += Number(m[1]) * unit[m[2]];
    matched += m[0];
  }
  if (!matched || matched.replace(/\s/g, "") !== t.replace(/\s/g, "")) {
    throw new Error(`not a duration: ${JSON.stringify(text)} (e.g. 90s, 1h30m)`);
  }
  return total;
}

function simpleFromJson(s: SimpleType, value: JsonValue, where: string): Literal {
  const fail = (what: string): never => {
    throw new Error(`${where}: expected ${what}, got ${JSON.stringify(value)}`);
  };
  switch (s) {
    case SimpleType.NONE:
      return value === null ? none() : fail("null");
    case SimpleType.INTEGER:
      if (typeof value === "number" && Number.isInteger(value)) {
        return prim({ case: "integer", value: BigInt(value) });
      }
      if (typeof value === "string" && /^-?\d+$/.test(value.trim())) {
        return prim({ case: "integer", value: BigInt(value.trim()) });
      }
      return fail("an integer");
    case SimpleType.FLOAT:
      if (typeof value === "number") return prim({ case: "floatValue", value });
      if (typeof value === "string" && value.trim() !== "" && !Number.isNaN(Number(value))) {
        return prim({ case: "floatValue", value: Number(value) });
      }
      return fail("a number");
    case SimpleType.STRING:
      return typeof value === "string" ? prim({ case: "stringValue", value }) : fail("a string");
    case SimpleType.BOOLEAN:
      if (typeof value === "boolean") return prim({ case: "boolean", value });
      if (value === "true" || value === "false") {
        return prim({ case: "boolean", value: value === "true" });
      }
      return fail("true or false");
    case SimpleType.DATETIME: {
      const d = typeof value === "string" ? new Date(value) : undefined;
      if (!d || Number.isNaN(d.getTime())) return fail("an ISO date and time");
      return prim({ case: "datetime", value: timestampFromDate(d) });
    }
    case SimpleType.DURATION: {
      const secs = typeof value === "number" ? value : parseDuration(String(value));
      const whole = Math.floor(secs);
      return prim({
        case: "duration",
        value: create(DurationSchema, {
          seconds: BigInt(whole),
          nanos: Math.round((secs - whole) * 1e9),
        }),
      });
    }
    case SimpleType.STRUCT:
      if (value && typeof value === "object" && !Array.isArray(value)) {
        return create(LiteralSchema, {
          value: {
            case: "scalar",
            value: { value: { case: "generic", value: value as JsonObject } },
          },
        });
      }
      return fail("a JSON object");
    default:
      return fail("a supported value");
  }
}

/**
 * A Literal of type `t` from a JSON value (lists for lists, objects for maps and records,
 * strings for dates, durations, enums and files).
 *
 * @throws Error naming the path into the value that does not fit.
 */
export function literalFromJson(t: LiteralType, value: JsonValue, where: string): Literal {
  const v = t.type;
  switch (v.case) {
    case "simple":
      return simpleFromJson(v.value, value, where);
    case "collectionType": {
      if (!Array.isArray(value)) throw new Error(`${where}: expected a list`);
      const literals = value.map((x, i) => literalFromJson(v.value, x, `${where}[${i}]`));
      return create(LiteralSchema, { value: { case: "collection", value: { literals } } });
    }
    case "mapValueType": {
      if (!value || typeof value !== "object" || Array.isArray(value)) {
        throw new Error(`${where}: expected an object`);
      }
      const literals: Record<string, Literal> = {};
      for (const [k, x] of Object.entries(value)) {
        literals[k] = literalFromJson(v.value, x as JsonValue, `${where}.${k}`);
      }
      return create(LiteralSchema, { value: { case: "map", value: { literals } } });
    }
    case "recordType": {
      if (!value || typeof value !== "object" || Array.isArray(value)) {
        throw new Error(`${where}: expected an object with ${v.value.fields.map((f) => f.name)}`);
      }
      const obj = value as JsonObject;
      const fields = v.value.fields.map((f) => {
        if (!(f.name in obj)) throw new Error(`${where}.${f.name}: missing`);
        if (!f.type) throw new Error(`${where}.${f.name}: untyped field`);
        return { name: f.name, value: literalFromJson(f.type, obj[f.name], `${where}.${f.name}`) };
      });
      return create(LiteralSchema, { value: { case: "record", value: { fields } } });
    }
    case "enumType":
      if (typeof value !== "string" || !v.value.values.includes(value)) {
        throw new Error(`${where}: expected one of ${v.value.values.join(", ")}`);
      }
      return prim({ case: "stringValue", value });
    case "blob":
      if (typeof value !== "string" || !value) throw new Error(`${where}: expected a URI`);
      return create(LiteralSchema, {
        value: {
          case: "scalar",
          value: { value: { case: "blob", value: { type: v.value, uri: value } } },
        },
      });
    case "unionType":
      return unionFromJson(v.value.variants, value, where);
    default:
      throw new Error(`${where}: unsupported type`);
  }
}

function unionFromJson(variants: LiteralType[], value: JsonValue, where: string): Literal {
  const problems: string[] = [];
  for (const variant of variants) {
    try {
      const inner = literalFromJson(variant, value, where);
      return create(LiteralSchema, {
        value: {
          case: "scalar",
          value: { value: { case: "union", value: { value: inner, type: variant } } },
        },
      });
    } catch (err) {
      problems.push((err as Error).message);
    }
  }
  throw new Error(`${where}: fits none of ${variants.map(typeText).join(" | ")}`);
}

/** A value as JSON (to prefill a form field with a default). */
export function literalToJson(lit: Literal | undefined): JsonValue {
  const v = lit?.value;
  if (!v) return null;
  switch (v.case) {
    case "scalar": {
      const s = v.value.value;
      if (s.case === "primitive") {
        const p = s.value.value;
        if (p.case === "integer") return Number(p.value);
        if (p.case === "datetime") return timestampDate(p.value).toISOString();
        if (p.case === "duration") return `${Number(p.value.seconds) + p.value.nanos / 1e9}s`;
        return p.value ?? null;
      }
      if (s.case === "blob") return s.value.uri;
      if (s.case === "generic") return s.value;
      if (s.case === "union") return literalToJson(s.value.value);
      return null;
    }
    case "collection":
      return v.value.literals.map(literalToJson);
    case "map":
      return Object.fromEntries(
        Object.entries(v.value.literals).map(([k, l]) => [k, literalToJson(l)]),
      );
    case "record":
      return Object.fromEntries(v.value.fields.map((f) => [f.name, literalToJson(f.value)]));
    default:
      return null;
  }
}

/** Whether a type accepts None (an optional input may be left empty). */
export function acceptsNone(t: LiteralType | undefined): boolean {
  const v = t?.type;
  if (!v) return false;
  if (v.case === "simple") return v.value === SimpleType.NONE;
  if (v.case === "unionType") return v.value.variants.some(acceptsNone);
  return false;
}

/** How a form field of this type is typed: plain text is parsed per simple type. */
export function isPlainText(t: LiteralType | undefined): boolean {
  const v = t?.type;
  if (!v) return false;
  if (v.case === "blob" || v.case === "enumType") return true;
  return (
    v.case === "simple" &&
    [
      SimpleType.INTEGER,
      SimpleType.FLOAT,
      SimpleType.STRING,
      SimpleType.BOOLEAN,
      SimpleType.DATETIME,
      SimpleType.DURATION,
    ].includes(v.value)
  );
}
