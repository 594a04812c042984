/** Generates gitops repositories of N app specs for the benchmarks. */
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createAgent } from "../../src/agent.ts";
import type { AppState, Runtime } from "../../src/runtime.ts";

/** Spec file formats the benchmarks cover. */
export type BenchFormat = "yaml" | "json" | "erlang";

const FILE = { yaml: "app.yaml", json: "app.json", erlang: "app.config" } as const;

function specText(i: number, format: BenchFormat): string {
  const name = `app_${i}`;
  const dep = i > 0 ? `app_${i - 1}` : undefined;
  switch (format) {
    case "yaml":
      return `name: ${name}\nversion: "1.${i}.0"\ndescription: Benchmark app ${i}\nsource:\n  type: git\n  url: https://git.example.com/acme/${name}.git\n  ref: v1.${i}.0\nenv:\n  port: ${10000 + i}\n  pool_size: 10\n  log_level: info\nhealth:\n  type: http\n  path: /health\n  interval: 30s\n  timeout: 5s\ndepends_on: [${dep ?? ""}]\n`;
    case "json":
      return JSON.stringify(
        {
          name,
          version: `1.${i}.0`,
          description: `Benchmark app ${i}`,
          source: { type: "git", url: `https://git.example.com/acme/${name}.git`, ref: `v1.${i}.0` },
          env: { port: 10000 + i, pool_size: 10, log_level: "info" },
          health: { type: "http", path: "/health", interval: "30s", timeout: "5s" },
          depends_on: dep ? [dep] : [],
        },
        null,
        2,
      );
    case "erlang":
      return `#{\n  name => ${name},\n  version => <<"1.${i}.0">>,\n  description => <<"Benchmark app ${i}">>,\n  source => #{type => git, url => <<"https://git.example.com/acme/${name}.git">>, ref => <<"v1.${i}.0">>},\n  env => #{port => ${10000 + i}, pool_size => 10, log_level => info},\n  health => #{type => http, path => <<"/health">>, interval => 30000, timeout => 5000},\n  depends_on => [${dep ?? ""}]\n}.\n`;
  }
}

/** Writes a repository with `count` specs of `format` under a new temp dir; returns the repo root. */
export async function makeSpecRepo(count: number, format: BenchFormat, parent?: string): Promise<string> {
  const root = await mkdtemp(join(parent ?? tmpdir(), `bc-gitops-bench-${format}-${count}-`));
  await Promise.all(
    Array.from({ length: count }, async (_, i) => {
      const dir = join(root, "apps", `app_${i}`);
      await mkdir(dir, { recursive: true });
      await writeFile(join(dir, FILE[format]), specText(i, format));
    }),
  );
  return root;
}

/** Git with a fixed identity and no machine or user configuration. */
export const BENCH_GIT_ENV = {
  GIT_AUTHOR_NAME: "b",
  GIT_AUTHOR_EMAIL: "b@b",
  GIT_COMMITTER_NAME: "b",
  GIT_COMMITTER_EMAIL: "b@b",
  GIT_CONFIG_NOSYSTEM: "1",
  GIT_CONFIG_GLOBAL: "/dev/null",
};

/** A runtime that does no work, so the agent's own cost is what is measured. */
export function noopRuntime(): Runtime {
  const apps = new Map<string, AppState>();
  const up = async (spec: { name: string; version: string }) => {
    const state: AppState = { name: spec.name, version: spec.version, status: "running", health: "healthy" };
    apps.set(spec.name, state);
    return state;
  };
  return {
    deploy: up,
    upgrade: up,
    reconfigure: up,
    remove: async (n) => void apps.delete(n),
    getCurrentState: async () => Object.fromEntries(apps),
  };
}

/** An agent on `bare` with a {@link noopRuntime}, no control API and no timed ticks: the benchmarks' subject. */
export function noopAgent(bare: string, localPath: string): ReturnType<typeof createAgent> {
  return createAgent({ repoUrl: bare, localPath, runtime: noopRuntime(), reconcileInterval: "1h", listen: "off" });
}

/** A full garbage collection where the runtime offers one (Bun; Node and Deno with `--expose-gc`). */
export function fullGc(): void {
  (globalThis as { Bun?: { gc(full: boolean): void } }).Bun?.gc(true) ?? (globalThis as { gc?: () => void }).gc?.();
}

/** A TCP port free on 127.0.0.1 right now. */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/**
 * Times `runs` first ticks of a fresh agent on `bare` (a no-op runtime, a new local path each:
 * clone, read every spec, deploy every app); each must deploy `apps` apps. Returns the times (ms).
 */
export async function timeFirstTicks(bare: string, apps: number, runs: number): Promise<number[]> {
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const localPath = `${bare}-first-${i}`;
    const fresh = noopAgent(bare, localPath);
    const t = performance.now();
    const result = await fresh.start();
    times.push(performance.now() - t);
    await fresh.stop();
    await rm(localPath, { recursive: true, force: true });
    if (result.actions.length !== apps) throw new Error(`first tick: ${result.actions.length} actions`);
  }
  return times;
}
