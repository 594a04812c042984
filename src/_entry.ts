/**
 * The module a workspace's app is imported from: the spec's `entry`, else package.json `exports`
 * (the `.` export, under the conditions of the runtime the agent runs on), `module` or `main`, else
 * `index.js|ts|mjs`; always a file inside the package.
 */
import { realpathSync } from "node:fs";
import { join, resolve } from "node:path";
import { runtimeName } from "./_platform.ts";
import { inside, isFile, readJson } from "./_tree.ts";
import { GitopsError, type ErrorCode } from "./errors.ts";
import { redact } from "./redact.ts";
import type { AppSpec } from "./spec.ts";

/** Export conditions honoured when picking the entry, in package.json key order (Node's algorithm). */
const CONDITIONS = new Set([runtimeName, "node", "import", "module", "default"]);

const fail = (message: string, code: ErrorCode) => new GitopsError(redact(message), { code, retry: "stalled" });

/** The module to import, inside `root` (spec entry, package.json exports/module/main, index.js|ts|mjs). */
export async function entryOf(root: string, spec: AppSpec): Promise<string> {
  const pkg = await readJson(join(root, "package.json"));
  let chosen = spec.entry ?? exportsEntry(pkg?.exports) ?? text(pkg?.module) ?? text(pkg?.main);
  if (chosen === undefined) {
    for (const name of ["index.js", "index.ts", "index.mjs"]) {
      if (chosen === undefined && (await isFile(join(root, name)))) chosen = name;
    }
  }
  // A process app's `command` says what to run: it needs no module to import.
  if (chosen === undefined && spec.command && spec.isolation === "process") return root;
  if (chosen === undefined) {
    const hint = "set entry in the spec, or exports/module/main in package.json, or add index.js";
    throw fail(`${spec.name} has no entry: ${hint}`, "E_NOT_FOUND");
  }
  const outside = () => fail(`the entry ${chosen} of ${spec.name} is outside its package`, "E_UNSAFE");
  const base = resolve(root, chosen);
  if (!inside(root, base)) throw outside();
  // Like Node's `main`: the file, then with `.js`, then the directory's index.js.
  for (const candidate of [base, `${base}.js`, join(base, "index.js")]) {
    if (!(await isFile(candidate))) continue;
    if (!inside(realpathSync(root), realpathSync(candidate))) throw outside(); // synchronous: see _fs-sync.ts
    return candidate;
  }
  throw fail(`the entry ${chosen} of ${spec.name} does not exist in its package`, "E_NOT_FOUND");
}

/** The `.` export of package.json `exports` (string, conditions object, `{ ".": … }` map, or array). */
function exportsEntry(exports: unknown): string | undefined {
  const map = record(exports);
  return Object.keys(map).some((k) => k.startsWith(".")) ? conditional(map["."]) : conditional(exports);
}

function conditional(target: unknown): string | undefined {
  if (typeof target === "string") return target;
  if (Array.isArray(target)) return target.map(conditional).find((t) => t !== undefined);
  if (typeof target !== "object" || target === null) return undefined;
  for (const [condition, value] of Object.entries(target)) {
    const found = CONDITIONS.has(condition) ? conditional(value) : undefined;
    if (found !== undefined) return found;
  }
  return undefined;
}

const record = (v: unknown): Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : {};
const text = (v: unknown): string | undefined => (typeof v === "string" && v !== "" ? v : undefined);
