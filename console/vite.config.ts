// The console is built into the engine's package, which serves it (`plait serve
// --console-address`, `plait console`).
import { defineConfig } from "vite";

export default defineConfig({
  oxc: { jsx: { runtime: "automatic", importSource: "preact" } },
  build: {
    outDir: "../engine/plait_engine/console/static",
    emptyOutDir: true,
    chunkSizeWarningLimit: 1024,
  },
  server: {
    // `npm run dev` against a console on :8090 (`plait console`).
    proxy: {
      "^/(plaitidl|grpc)\\.": "http://127.0.0.1:8090",
      "/console.json": "http://127.0.0.1:8090",
    },
  },
});
