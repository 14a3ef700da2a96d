// The console's frame: navigation, the token field, and the page of the current path.
import { useEffect, useState } from "preact/hooks";
import { type ConsoleSettings, consoleSettings, getToken, setToken } from "./api";
import { ExecutionPage } from "./pages/Execution";
import { ExecutionsPage } from "./pages/Executions";
import { NodePage } from "./pages/Node";
import { EntityPage, type Kind, RegistryPage } from "./pages/Registry";
import { linkClick, type Route, useRoute } from "./router";

function TokenField() {
  const [value, setValue] = useState(getToken());
  const [saved, setSaved] = useState(Boolean(getToken()));
  return (
    <form
      class="token"
      onSubmit={(e) => {
        e.preventDefault();
        setToken(value.trim());
        setSaved(Boolean(value.trim()));
        window.location.reload();
      }}
    >
      <input
        type="password"
        name="token"
        placeholder="token (if the engine needs one)"
        value={value}
        autocomplete="off"
        onInput={(e) => setValue(e.currentTarget.value)}
      />
      <button type="submit">{saved ? "Change" : "Use"}</button>
    </form>
  );
}

function page(route: Route) {
  const parts = route.path.split("/").filter(Boolean);
  if (parts[0] === "executions" && parts.length === 5 && parts[4] === "node") {
    return <NodePage route={route} parts={parts.slice(1, 4)} />;
  }
  if (parts[0] === "executions" && parts.length === 4) {
    return <ExecutionPage route={route} parts={parts.slice(1, 4)} />;
  }
  if (["workflows", "tasks", "launchplans"].includes(parts[0])) {
    const kind = parts[0] as Kind;
    if (parts.length === 4) return <EntityPage kind={kind} parts={parts.slice(1)} route={route} />;
    return <RegistryPage kind={kind} />;
  }
  if (parts.length === 0 || parts[0] === "executions") return <ExecutionsPage route={route} />;
  return <p>No such page: {route.path}</p>;
}

const NAV: [string, string][] = [
  ["/executions", "Executions"],
  ["/workflows", "Workflows"],
  ["/launchplans", "Launch plans"],
  ["/tasks", "Tasks"],
];

export function App() {
  const route = useRoute();
  const [settings, setSettings] = useState<ConsoleSettings | undefined>();
  useEffect(() => {
    consoleSettings().then(setSettings);
  }, []);
  const section = `/${route.path.split("/").filter(Boolean)[0] ?? "executions"}`;
  return (
    <>
      <header class="top">
        <a class="brand" href="/" onClick={(e) => linkClick(e, "/")}>
          plait
        </a>
        <nav>
          {NAV.map(([href, label]) => (
            <a
              key={href}
              href={href}
              class={section === href ? "on" : ""}
              onClick={(e) => linkClick(e, href)}
            >
              {label}
            </a>
          ))}
        </nav>
        {settings?.mode === "local" && <span class="mode">local data dir {settings.data_dir}</span>}
        <TokenField />
      </header>
      <main>{page(route)}</main>
    </>
  );
}
