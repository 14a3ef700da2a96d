// A form generated from a workflow's (or launch plan's) interface: one field per input, typed.
import { create, type JsonValue } from "@bufbuild/protobuf";
import { useMemo, useState } from "preact/hooks";
import { errorText, executions } from "../api";
import { executionPath } from "../format";
import type { Identifier } from "../gen/plaitidl/core/v1/identifier_pb";
import type { Parameter, Variable } from "../gen/plaitidl/core/v1/interface_pb";
import {
  type Literal,
  type LiteralMap,
  LiteralMapSchema,
} from "../gen/plaitidl/core/v1/literals_pb";
import type { LiteralType } from "../gen/plaitidl/core/v1/types_pb";
import {
  acceptsNone,
  isPlainText,
  LiteralView,
  literalFromJson,
  literalToJson,
  typeText,
} from "../literal";
import { navigate } from "../router";

/** One input of the form. */
export interface Field {
  name: string;
  type: LiteralType | undefined;
  description: string;
  required: boolean;
  default?: Literal;
}

/** The fields of an interface's inputs with the defaults of `params`. */
export function fieldsOf(inputs: Variable[], params: Parameter[]): Field[] {
  const byName = new Map(params.map((p) => [p.var?.name ?? "", p]));
  return inputs.map((v) => {
    const p = byName.get(v.name);
    const def = p?.behavior.case === "default" ? p.behavior.value : undefined;
    return {
      name: v.name,
      type: v.type,
      description: v.description,
      required: def === undefined && !acceptsNone(v.type),
      default: def,
    };
  });
}

function initial(f: Field): string {
  if (!f.default) return "";
  const json = literalToJson(f.default);
  if (isPlainText(f.type) || (typeof json === "string" && isPlainText(plainVariant(f.type)))) {
    return json === null ? "" : String(json);
  }
  return JSON.stringify(json);
}

function plainVariant(t: LiteralType | undefined): LiteralType | undefined {
  if (t?.type.case !== "unionType") return undefined;
  return t.type.value.variants.find((v) => isPlainText(v));
}

function parseField(f: Field, text: string): Literal | undefined {
  if (!f.type) throw new Error(`${f.name}: untyped input`);
  if (text.trim() === "") {
    if (f.default) return undefined; // the default applies on the server
    if (acceptsNone(f.type)) return literalFromJson(f.type, null, f.name);
    throw new Error(`${f.name}: required`);
  }
  const plain = isPlainText(f.type) || isPlainText(plainVariant(f.type));
  let value: JsonValue = text;
  if (!plain || (f.type.type.case === "unionType" && text.trim() === "null")) {
    try {
      value = JSON.parse(text) as JsonValue;
    } catch {
      throw new Error(`${f.name}: not valid JSON (lists, dicts and records are typed as JSON)`);
    }
  }
  return literalFromJson(f.type, value, f.name);
}

function FieldInput(props: { field: Field; value: string; onInput: (v: string) => void }) {
  const { field, value, onInput } = props;
  const t = field.type?.type;
  const id = `input-${field.name}`;
  if (t?.case === "enumType" || (t?.case === "simple" && typeText(field.type) === "bool")) {
    const options = t.case === "enumType" ? t.value.values : ["true", "false"];
    return (
      <select
        id={id}
        name={field.name}
        value={value}
        onChange={(e) => onInput(e.currentTarget.value)}
      >
        <option value="">{field.default ? "(default)" : "choose"}</option>
        {options.map((o) => (
          <option key={o} value={o}>
            {o}
          </option>
        ))}
      </select>
    );
  }
  if (isPlainText(field.type) || isPlainText(plainVariant(field.type))) {
    return (
      <input
        id={id}
        name={field.name}
        value={value}
        placeholder={typeText(field.type)}
        onInput={(e) => onInput(e.currentTarget.value)}
      />
    );
  }
  return (
    <textarea
      id={id}
      name={field.name}
      rows={3}
      value={value}
      placeholder={`${typeText(field.type)} as JSON`}
      onInput={(e) => onInput(e.currentTarget.value)}
    />
  );
}

/** Launch form: fields from the interface, then `CreateExecution`. */
export function LaunchForm(props: {
  target: { case: "workflowId" | "launchPlanId"; id: Identifier };
  fields: Field[];
  fixed?: LiteralMap;
  disabled?: string;
}) {
  const { target, fields, fixed, disabled } = props;
  const [values, setValues] = useState<Record<string, string>>(() =>
    Object.fromEntries(fields.map((f) => [f.name, initial(f)])),
  );
  const [labels, setLabels] = useState("");
  const [error, setError] = useState("");
  const [busy, setBusy] = useState(false);
  const requestId = useMemo(() => crypto.randomUUID(), []);

  const submit = async (e: Event) => {
    e.preventDefault();
    setError("");
    let inputs: LiteralMap;
    const labelMap: Record<string, string> = {};
    try {
      const literals: Record<string, Literal> = {};
      for (const f of fields) {
        const lit = parseField(f, values[f.name] ?? "");
        if (lit) literals[f.name] = lit;
      }
      inputs = create(LiteralMapSchema, { literals });
      for (const part of labels.split(",")) {
        if (!part.trim()) continue;
        const [k, ...rest] = part.split("=");
        if (!k.trim() || rest.length === 0) throw new Error(`labels: write key=value, got ${part}`);
        labelMap[k.trim()] = rest.join("=").trim();
      }
    } catch (err) {
      setError((err as Error).message);
      return;
    }
    setBusy(true);
    try {
      const res = await executions.createExecution({
        requestId,
        target: { case: target.case, value: target.id },
        inputs,
        labels: labelMap,
      });
      if (res.execution?.id) navigate(executionPath(res.execution.id));
    } catch (err) {
      setError(errorText(err));
    } finally {
      setBusy(false);
    }
  };

  return (
    <form class="launch" onSubmit={submit}>
      <h3>Launch</h3>
      {fields.length === 0 && <p class="muted">No inputs.</p>}
      {fields.map((f) => (
        <div class="field" key={f.name}>
          <label for={`input-${f.name}`}>
            {f.name} <span class="type">{typeText(f.type)}</span>
            {f.required ? <span class="required"> required</span> : null}
          </label>
          <FieldInput
            field={f}
            value={values[f.name] ?? ""}
            onInput={(v) => {
              setValues({ ...values, [f.name]: v });
              setError("");
            }}
          />
          {f.description && <div class="hint">{f.description}</div>}
        </div>
      ))}
      {fixed && Object.keys(fixed.literals).length > 0 && (
        <div class="field">
          <span class="field-title">fixed by the launch plan</span>
          {Object.entries(fixed.literals).map(([k, l]) => (
            <div key={k}>
              {k} = <LiteralView lit={l} />
            </div>
          ))}
        </div>
      )}
      <div class="field">
        <label for="input-labels">labels</label>
        <input
          id="input-labels"
          value={labels}
          placeholder="key=value, key2=value2"
          onInput={(e) => setLabels(e.currentTarget.value)}
        />
      </div>
      {error && <pre class="error-text">{error}</pre>}
      <button type="submit" class="primary" disabled={busy || Boolean(disabled)} title={disabled}>
        {busy ? "Launching…" : "Launch"}
      </button>
      {disabled && <p class="muted">{disabled}</p>}
    </form>
  );
}
