/**
 * A stand-in agent process for default.test.ts (a process of its own for the reason crash-host.ts
 * gives): an embedded app's dependency, linked from the revision that installed it, throws from a
 * timer. Usage: dependency-crash-host.ts <localPath> <repoDir>. Prints one JSON line with what it
 * saw, once the app is marked failed or 10 s passed.
 */
import { lstat, mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { Logger } from "../../src/logger.ts";
import { createDefaultRuntime } from "../../src/runtimes/default.ts";
import { AppSpec } from "../../src/spec.ts";
import { startRegistry } from "../helpers/registry.ts";

const [localPath, repoDir] = process.argv.slice(2) as [string, string];
const registry = await startRegistry();
const pkg = join(repoDir, "..", "throw-later");
await mkdir(pkg, { recursive: true });
await writeFile(
  join(pkg, "package.json"),
  JSON.stringify({ name: "@fixtures/throw-later", version: "1.0.0", type: "module", main: "index.js" }),
);
await writeFile(
  join(pkg, "index.js"),
  "export const throwLater = (message) => void setTimeout(() => { throw new Error(message); }, 10);\n",
);
await registry.publish("@fixtures/throw-later", "1.0.0", pkg);
process.env.NPM_CONFIG_REGISTRY = registry.url;

const logs: string[] = [];
const log = (level: string) => (message: string, fields?: Record<string, unknown>) =>
  void logs.push(`${level} ${typeof fields?.app === "string" ? `[${fields.app}] ` : ""}${message}`);
const logger: Logger = { debug: log("debug"), info: log("info"), warn: log("warn"), error: log("error") };
const runtime = createDefaultRuntime({ localPath, repoDir: () => repoDir, logger, stopTimeoutMs: 2000 });

const code = join(repoDir, "code", "thrower");
await mkdir(code, { recursive: true });
const word = (w: string) => writeFile(join(code, "word.js"), `export const WORD = ${JSON.stringify(w)};\n`);
await writeFile(
  join(code, "package.json"),
  JSON.stringify({
    name: "thrower",
    version: "1.0.0",
    type: "module",
    main: "index.js",
    dependencies: { "@fixtures/throw-later": "1.0.0" },
  }),
);
await writeFile(
  join(code, "index.js"),
  [
    'import { throwLater } from "@fixtures/throw-later";',
    'import { WORD } from "./word.js";',
    "export default {",
    '  fetch: (request) => (new URL(request.url).pathname === "/boom" && throwLater("the dependency throws"), Response.json({ message: WORD })),',
    "};",
    "",
  ].join("\n"),
);
const spec = AppSpec.parse({
  name: "thrower",
  version: "1.0.0",
  source: { type: "path", path: "code/thrower" },
  env: { port: 0 },
});
await word("one");
await runtime.deploy(spec);
await word("two"); // a new revision, same dependencies: its node_modules links the first one's
const second = await runtime.deploy(spec);
const linked = (await lstat(join(second.path!, "node_modules"))).isSymbolicLink();
const answer = await (
  await fetch(`http://127.0.0.1:${second.port}/boom`, { signal: AbortSignal.timeout(5000) })
).json();
const deadline = Date.now() + 10_000;
while ((await runtime.getCurrentState()).thrower?.status !== "failed" && Date.now() < deadline) {
  await new Promise((resolve) => setTimeout(resolve, 20));
}
const crashed = (await runtime.getCurrentState()).thrower;
await runtime.stopAll();
await registry.close();
console.log(JSON.stringify({ linked, answer, crashed, logs }));
process.exit(0); // an error attributed to no app leaves nothing to wait for
