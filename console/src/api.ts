// Clients of the engine's services over the Connect endpoint of the server that served this
// page: the same RPCs every other client calls, in binary protobuf.
import { Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { DataService } from "./gen/plaitidl/service/v1/data_service_pb";
import { ExecutionService } from "./gen/plaitidl/service/v1/execution_service_pb";
import { RegistryService } from "./gen/plaitidl/service/v1/registry_service_pb";
import { ScheduleService } from "./gen/plaitidl/service/v1/schedule_service_pb";

const TOKEN_KEY = "plait.token";

/** The bearer token of this browser tab (session storage: gone when the tab closes). */
export function getToken(): string {
  return sessionStorage.getItem(TOKEN_KEY) ?? "";
}

export function setToken(token: string): void {
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
}

const auth: Interceptor = (next) => async (req) => {
  const token = getToken();
  if (token) req.header.set("Authorization", `Bearer ${token}`);
  return await next(req);
};

const transport = createConnectTransport({
  baseUrl: window.location.origin,
  useBinaryFormat: true,
  interceptors: [auth],
});

export const executions = createClient(ExecutionService, transport);
export const registry = createClient(RegistryService, transport);
export const schedules = createClient(ScheduleService, transport);
export const data = createClient(DataService, transport);

/** What `/console.json` says about the server. */
export interface ConsoleSettings {
  mode: "server" | "local";
  data_dir: string;
  launch: boolean;
}

let settings: Promise<ConsoleSettings> | undefined;

export function consoleSettings(): Promise<ConsoleSettings> {
  settings ??= fetch("/console.json").then(
    (r) => r.json() as Promise<ConsoleSettings>,
    () => ({ mode: "server", data_dir: "", launch: true }),
  );
  return settings;
}

interface Violation {
  field?: string;
  description?: string;
}

/** A call's error as one line, with the field violations the engine attached. */
export function errorText(err: unknown): string {
  if (err instanceof DOMException && err.name === "AbortError") return "";
  const ce = ConnectError.from(err);
  if (ce.code === Code.Canceled) return "";
  let text = ce.rawMessage || Code[ce.code];
  for (const d of ce.details) {
    const debug =
      "debug" in d ? (d.debug as { fieldViolations?: Violation[] } | undefined) : undefined;
    for (const v of debug?.fieldViolations ?? []) {
      if (v.field && !text.includes(v.field)) text += `\n${v.field}: ${v.description ?? ""}`;
    }
  }
  if (ce.code === Code.Unauthenticated || ce.code === Code.PermissionDenied) {
    text += " (set a token at the top right)";
  }
  return text;
}

export function isAbort(err: unknown): boolean {
  return (
    (err instanceof DOMException && err.name === "AbortError") ||
    ConnectError.from(err).code === Code.Canceled
  );
}
