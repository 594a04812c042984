/**
 * Apps and a runtime harness for the hot reload tests: small real apps written as files into a
 * "gitops repo" directory (path sources), the default runtime over a temp `local_path`, and a
 * bounded request loop that counts failures while something happens to the app.
 */
import assert from "node:assert/strict";
import { readdir, rm } from "node:fs/promises";
import { join } from "node:path";
import type { TestContext } from "node:test";
import type { DefaultRuntimeOptions } from "../../src/runtimes/default.ts";
import type { AppState, RuntimeContext } from "../../src/runtime.ts";
import { AppSpec } from "../../src/spec.ts";
import { runtimeHarness, type RuntimeHarness } from "./runtime-harness.ts";
import { writeTree } from "./tmp.ts";

/**
 * A fetch app whose answer comes from a nested module: index.js -> lib/a.js -> lib/b.js (`WORD`).
 * `GET /` answers `{ message: "a+<WORD>", revision }`, `POST /echo` echoes the body and the
 * `x-test` header, `GET /stream` streams three chunks, `GET /slow` answers after 150 ms.
 */
export function nestedFetchApp(word: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    "package.json": JSON.stringify({ name: "nested", version: "1.0.0", type: "module", main: "index.js" }),
    "index.js": [
      'import { message } from "./lib/a.js";',
      "export default {",
      "  async fetch(request, ctx) {",
      "    const { pathname } = new URL(request.url);",
      '    if (pathname === "/health") return new Response("ok");',
      '    if (pathname === "/echo") return new Response(await request.text(), { status: 201, headers: { "x-echo": request.headers.get("x-test") ?? "" } });',
      '    if (pathname === "/stream") {',
      "      const parts = ['one,', 'two,', 'three'];",
      "      return new Response(new ReadableStream({ async pull(c) { const p = parts.shift(); if (p === undefined) c.close(); else { await new Promise((r) => setTimeout(r, 5)); c.enqueue(new TextEncoder().encode(p)); } } }));",
      "    }",
      '    if (pathname === "/slow") await new Promise((r) => setTimeout(r, 150));',
      "    return Response.json({ message: message(), revision: ctx.revision });",
      "  },",
      "};",
      "",
    ].join("\n"),
    "lib/a.js": 'import { WORD } from "./b.js";\nexport const message = () => "a+" + WORD;\n',
    "lib/b.js": `export const WORD = ${JSON.stringify(word)};\n`,
    ...extra,
  };
}

/**
 * A lifecycle app with its own node:http server (port 0, reported as `instance.port`) answering
 * `{ tag, generation }`; `tag` comes from tag.js. Each call is appended to `<dataDir>/events.log`.
 * With `hotReload`, the new module takes over the previous server (same port, generation + 1).
 * `env.fail_start` makes `start` throw. The server closes when `ctx.signal` aborts.
 */
export function lifecycleApp(tag: string, options: { hotReload?: boolean } = {}): Record<string, string> {
  return {
    "package.json": JSON.stringify({ name: "life", version: "1.0.0", type: "module", main: "server.js" }),
    "tag.js": `export const TAG = ${JSON.stringify(tag)};\n`,
    "server.js": [
      'import { appendFileSync } from "node:fs";',
      'import { createServer } from "node:http";',
      'import { join } from "node:path";',
      'import { TAG } from "./tag.js";',
      'const log = (ctx, line) => appendFileSync(join(ctx.dataDir, "events.log"), line + "\\n");',
      "const handler = (instance) => (req, res) => {",
      '  res.writeHead(200, { "content-type": "application/json" });',
      "  res.end(JSON.stringify({ tag: TAG, generation: instance.generation }));",
      "};",
      "export async function start(ctx) {",
      "  log(ctx, `start ${TAG}`);",
      "  if (ctx.env.fail_start) throw new Error(`life ${TAG} refuses to start`);",
      "  const instance = { generation: 1 };",
      "  instance.server = createServer(handler(instance));",
      '  await new Promise((resolve) => instance.server.listen(0, "127.0.0.1", resolve));',
      "  instance.port = instance.server.address().port;",
      '  ctx.signal.addEventListener("abort", () => { instance.server.close(); instance.server.closeAllConnections?.(); });',
      "  return instance;",
      "}",
      "export async function stop(instance, ctx) {",
      "  log(ctx, `stop ${TAG}`);",
      "  await new Promise((resolve) => { instance.server.close(() => resolve()); instance.server.closeAllConnections?.(); });",
      "}",
      ...(options.hotReload
        ? [
            "export async function hotReload(previous, ctx) {",
            "  log(ctx, `hotReload ${TAG} from generation ${previous.generation}`);",
            "  const instance = { ...previous, generation: previous.generation + 1 };",
            '  previous.server.removeAllListeners("request");',
            '  previous.server.on("request", handler(instance));',
            "  return instance;",
            "}",
          ]
        : []),
      "",
    ].join("\n"),
  };
}

/** A test's runtime over a temp directory holding the "repo" (`repo/code/<app>`) and `local_path`. */
export interface Harness extends RuntimeHarness {
  /** Writes (or, with `null`, deletes) files of `code/<app>/`. */
  write(app: string, files: Record<string, string | null>): Promise<void>;
}

/** Creates a {@link Harness}; everything is stopped and deleted when the test ends. */
export async function harness(
  t: TestContext,
  options: Partial<DefaultRuntimeOptions & Pick<RuntimeContext, "requestReconcile">> = {},
): Promise<Harness> {
  const h = await runtimeHarness(t, {
    prefix: "bc-gitops-reload-",
    options: () => ({ stopTimeoutMs: 2000, startWindowMs: 5000, ...options }),
  });
  return {
    ...h,
    async write(app, files) {
      for (const [path, content] of Object.entries(files)) {
        if (content === null) await rm(join(h.repo, "code", app, path), { force: true });
        else await writeTree(join(h.repo, "code", app), { [path]: content });
      }
    },
  };
}

/** The spec of app `name` from `code/<name>` (a path source), served or listening on a free port. */
export function appSpec(name: string, extra: Record<string, unknown> = {}): AppSpec {
  return AppSpec.parse({
    name,
    version: "1.0.0",
    source: { type: "path", path: `code/${name}` },
    env: { port: 0 },
    ...extra,
  });
}

/** GET `path` of the app on `port` as JSON; asserts a 200. */
export async function getJson<T = Record<string, unknown>>(port: unknown, path = "/"): Promise<T> {
  assert.equal(typeof port, "number", "the app reports its port");
  const response = await fetch(`http://127.0.0.1:${port}${path}`, { signal: AbortSignal.timeout(5000) });
  assert.equal(response.status, 200, `GET ${path} answered ${response.status}`);
  return (await response.json()) as T;
}

/** The app's state as the runtime reports it now. */
export async function stateOf(h: Harness, app: string): Promise<AppState> {
  const state = (await h.runtime.getCurrentState())[app];
  assert.ok(state, `${app} is known to the runtime`);
  return state;
}

/** Revision directories of `app` in the workspace (no leftovers). */
export async function revisionDirs(h: Harness, app: string): Promise<string[]> {
  return (await readdir(join(h.local, "workspace", app))).filter((n) => !n.startsWith(".")).sort();
}

/** What {@link underLoad} saw. */
export interface LoadResult {
  ok: number;
  failures: string[];
  /** Every `message` answered. */
  seen: Set<string>;
}

/**
 * Runs `loops` request loops against `GET http://127.0.0.1:<port>/` while `during` runs (and at
 * most `maxRequests` requests in all), then reports answers and failures (non-200, network errors).
 */
export async function underLoad(
  port: number,
  during: () => Promise<void>,
  loops = 4,
  maxRequests = 50_000,
): Promise<LoadResult> {
  const result: LoadResult = { ok: 0, failures: [], seen: new Set() };
  let done = false;
  let sent = 0;
  const loop = async () => {
    while (!done && sent++ < maxRequests) {
      try {
        const response = await fetch(`http://127.0.0.1:${port}/`, { signal: AbortSignal.timeout(10_000) });
        const body = (await response.json()) as { message?: string };
        if (response.status !== 200) result.failures.push(`status ${response.status}`);
        else {
          result.ok++;
          result.seen.add(String(body.message));
        }
      } catch (error) {
        result.failures.push(String(error));
      }
    }
  };
  const running = Array.from({ length: loops }, loop);
  try {
    // Let the loops get going so requests really are in flight when `during` starts.
    await new Promise((resolve) => setTimeout(resolve, 50));
    await during();
    await new Promise((resolve) => setTimeout(resolve, 50));
  } finally {
    done = true;
    await Promise.all(running);
  }
  return result;
}

/** Resolves once `probe` returns something other than `undefined`; fails after `ms`. */
export async function until<T>(
  what: string,
  probe: () => T | undefined | Promise<T | undefined>,
  ms = 20_000,
): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}
