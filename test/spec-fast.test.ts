/**
 * The fast path of spec validation (src/_spec-fast.ts) must return exactly what the zod schema
 * returns (values and key order) or decline, on every spec of the corpus and on mutations of each
 * field; and it must take the shapes real repositories use, or it saves nothing.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { plainSpec } from "../src/_spec-fast.ts";
import { dropNulls } from "../src/_spec-validation.ts";
import { AppSpec } from "../src/spec.ts";
import { parseSpecText } from "../src/spec-file.ts";
import { CORPUS, specFile } from "./helpers/spec-corpus.ts";

type Obj = Record<string, unknown>;

/** What validateText hands the schema for a corpus spec. */
async function inputOf(spec: (typeof CORPUS)[number]["spec"]): Promise<Obj | undefined> {
  const { text, format } = specFile(spec);
  const parsed = await parseSpecText(text, format).catch(() => undefined);
  const value = parsed?.value;
  return typeof value === "object" && value !== null && !Array.isArray(value) ? dropNulls(value as Obj) : undefined;
}

/** Fails unless the fast path declines `input` or returns what zod returns for it, key order included. */
function assertAgrees(input: Obj, what: string): "taken" | "declined" {
  const fast = plainSpec(structuredClone(input));
  const zod = AppSpec.safeParse(structuredClone(input));
  if (fast === undefined) return "declined";
  assert.ok(zod.success, `${what}: the fast path accepts what zod refuses: ${JSON.stringify(input)}`);
  assert.equal(JSON.stringify(fast), JSON.stringify(zod.data), `${what}: ${JSON.stringify(input)}`);
  assert.deepEqual(fast, zod.data, what);
  return "taken";
}

test("the fast path returns what zod returns, or declines, on every spec of the corpus", async () => {
  const taken: string[] = [];
  for (const c of CORPUS) {
    const input = await inputOf(c.spec);
    if (input && assertAgrees(input, c.title) === "taken") taken.push(c.title);
  }
  assert.ok(taken.length >= 15, `the fast path takes only ${taken.length} corpus specs: ${taken.join("; ")}`);
});

/** Values each field is set to in turn (`undefined`: the field is left out). */
const PROBES: unknown[] = [
  undefined,
  "",
  "x",
  "web",
  "db",
  "-x",
  "../x",
  "a/../../x",
  "/abs",
  "src\\..\\..\\x",
  "@acme/web",
  "my app",
  "npm",
  "git",
  "path",
  "release",
  "custom",
  "module",
  "http",
  "vm",
  "process",
  "SIGHUP",
  "SIGKILL",
  "30s",
  " 5 s ",
  "-5s",
  "soon",
  0,
  1,
  -1,
  1.5,
  8080,
  65535,
  65536,
  Number.MAX_SAFE_INTEGER + 2,
  Infinity,
  true,
  [],
  [""],
  ["web"],
  ["db"],
  ["db", "db"],
  ["db", { name: "cache" }],
  [{ name: 5 }],
  ["node", 1],
  {},
  { name: "db" },
  { type: "npm" },
  { type: "git", url: "x" },
  { type: "path", path: "code/web" },
  { type: "release", url: "x", sha256: "a".repeat(64) },
  { memory_mb: 256 },
  { port: 8080 },
  JSON.parse('{"__proto__": {"x": 1}, "a": 1}'),
];

const FIELDS = [
  "name",
  "version",
  "description",
  "icon",
  "source",
  "source.type",
  "source.url",
  "source.ref",
  "source.subdir",
  "source.path",
  "source.package",
  "source.registry",
  "entry",
  "isolation",
  "command",
  "limits",
  "limits.memory_mb",
  "env",
  "env.port",
  "health",
  "health.type",
  "health.port",
  "health.path",
  "health.interval",
  "health.timeout",
  "health.module",
  "depends_on",
  "reload_signal",
  "placement",
  "overrides",
  "rollout",
  "license",
];

function withField(base: Obj, path: string, value: unknown): Obj {
  const out = structuredClone(base);
  const [head, key] = path.split(".") as [string, string | undefined];
  if (key === undefined) {
    if (value === undefined) delete out[head];
    else out[head] = value;
    return out;
  }
  const parent = typeof out[head] === "object" && out[head] !== null ? (out[head] as Obj) : (out[head] = {});
  if (value === undefined) delete (parent as Obj)[key];
  else (parent as Obj)[key] = value;
  return out;
}

test("the fast path agrees with zod when any field of a spec it takes is changed to anything", async () => {
  let taken = 0;
  let declined = 0;
  for (const c of CORPUS) {
    const base = await inputOf(c.spec);
    if (!base || plainSpec(structuredClone(base)) === undefined) continue;
    for (const field of FIELDS) {
      for (const probe of PROBES) {
        if (assertAgrees(withField(base, field, probe), `${c.title}, ${field} = ${JSON.stringify(probe)}`) === "taken")
          taken++;
        else declined++;
      }
    }
  }
  // Both sides are exercised: mutations it takes (compared value by value) and ones it leaves to zod.
  assert.ok(taken > 1000 && declined > 1000, `taken ${taken}, declined ${declined}`);
});

test("the fast path takes the shapes real repositories use", async () => {
  const specs: Record<string, string> = {
    "a benchmark spec (git source, env, http health, one dependency)":
      'name: app_1\nversion: "1.1.0"\ndescription: Benchmark app 1\nsource:\n  type: git\n  url: https://git.example.com/acme/app_1.git\n  ref: v1.1.0\nenv:\n  port: 10001\n  pool_size: 10\n  log_level: info\nhealth:\n  type: http\n  path: /health\n  interval: 30s\n  timeout: 5s\ndepends_on: [app_0]\n',
    "an npm app with only a name and a version": 'name: web\nversion: "1.0.0"\n',
    "a path source in a worker with limits":
      'name: web\nversion: "1"\nsource: { type: path, path: services/web }\nisolation: worker\nlimits: { memory_mb: 256 }\n',
    "a process app with a command and a reload signal":
      'name: web\nversion: "1"\nisolation: process\ncommand: [node, server.js]\nreload_signal: SIGHUP\nhealth: { type: tcp, port: 8080 }\n',
    "depends_on written as { name } maps": 'name: web\nversion: "1"\ndepends_on: [{ name: db }, cache]\n',
  };
  for (const [what, text] of Object.entries(specs)) {
    const input = dropNulls((await parseSpecText(text, "yaml")).value as Obj);
    assert.notEqual(plainSpec(input), undefined, what);
    assert.equal(assertAgrees(input, what), "taken");
  }
});
