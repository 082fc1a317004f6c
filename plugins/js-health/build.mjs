// Builds health.js into a WebAssembly component of the health-check world of
// switchyard:policy (../../wit): `npm ci && npm run build`, or
// `node build.mjs OUT.wasm`. Every optional engine feature (stdio, random,
// clocks, http, fetch-event) is left out, so the component imports nothing but
// the switchyard:policy interfaces: the proxy grants a plugin nothing else.
import { componentize } from "@bytecodealliance/componentize-js";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const out = resolve(process.argv[2] ?? resolve(here, "../target/js/js_health.wasm"));

const started = Date.now();
const { component } = await componentize(await readFile(resolve(here, "health.js"), "utf8"), {
  witPath: resolve(here, "../../wit"),
  worldName: "health-check",
  disableFeatures: ["stdio", "random", "clocks", "http", "fetch-event"],
});
await mkdir(dirname(out), { recursive: true });
await writeFile(out, component);
console.log(`${out}: ${component.length} bytes in ${((Date.now() - started) / 1000).toFixed(1)} s`);
