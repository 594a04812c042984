/**
 * The one place that reads the `Bun` and `Deno` globals. Everything runtime-specific is decided
 * here, so the rest of the code stays plain TypeScript on Node built-ins.
 */
import { basename } from "node:path";

interface BunGlobal {
  version: string;
  YAML?: { parse(text: string): unknown };
  serve(options: {
    hostname: string;
    port: number;
    development: boolean;
    reusePort: boolean;
    fetch(request: Request): Promise<Response>;
    error(error: unknown): Response;
  }): { hostname: string; port: number; stop(closeActiveConnections?: boolean): Promise<void> };
  spawn(options: {
    cmd: string[];
    cwd?: string;
    env: Record<string, string>;
    stdin: "ignore" | Uint8Array;
    stdout: "pipe";
    stderr: "pipe";
    detached: boolean;
  }): BunSubprocess;
}
interface BunSubprocess {
  readonly pid: number;
  readonly stdout: ReadableStream<Uint8Array>;
  readonly stderr: ReadableStream<Uint8Array>;
  readonly exited: Promise<number>;
  readonly signalCode: string | null;
  kill(signal?: string): void;
}
interface DenoGlobal {
  version: { deno: string };
  execPath(): string;
  serve(
    options: { hostname: string; port: number; onListen(): void; onError(error: unknown): Response },
    handler: (request: Request) => Promise<Response>,
  ): { addr: { hostname: string; port: number }; shutdown(): Promise<void> };
}

const bun = (globalThis as { Bun?: BunGlobal }).Bun;
const deno = (globalThis as { Deno?: DenoGlobal }).Deno;

/** Which JavaScript runtime this process runs on. */
export const runtimeName: "bun" | "deno" | "node" = bun ? "bun" : deno ? "deno" : "node";

/** The runtime's version, e.g. `1.4.5`. */
export const runtimeVersion: string = bun?.version ?? deno?.version.deno ?? process.versions.node;

/**
 * Bun's native YAML parser (about 30x faster than the `yaml` package on spec-sized files), or
 * `undefined` elsewhere. It is only a fast path: it reports no positions and takes the last of
 * duplicate keys, so callers fall back to the `yaml` package for errors and suspicious input.
 */
export const nativeYamlParse: ((text: string) => unknown) | undefined = bun?.YAML?.parse
  ? (text) => bun.YAML!.parse(text)
  : undefined;

/**
 * True inside a `bun build --compile` executable: Bun is the runtime but the process is not the
 * `bun` binary itself, so the `bun` CLI is only reachable by re-running this executable with
 * `BUN_BE_BUN=1`.
 */
export const isCompiledBun: boolean = bun !== undefined && !/^bun(\.exe)?$/i.test(basename(process.execPath));

/** A finished short-lived child of {@link nativeRun}. */
export interface NativeRunOutput {
  stdout: string;
  stderr: string;
  /** `undefined` when a signal ended it (then `signal` names it). */
  exitCode: number | undefined;
  signal: string | undefined;
}

/** A short-lived child started by {@link nativeRun}. */
export interface NativeRun {
  readonly pid: number;
  /** Settles once it exited and its output closed. */
  readonly output: Promise<NativeRunOutput>;
  kill(signal: string): void;
}

/**
 * Bun's own spawn for the short-lived children `exec` runs (git, tar), or `undefined` elsewhere.
 * Under Bun, `node:child_process` keeps about 30 KB per child until some later collection (the
 * agent's RSS drifts 15-25 MB higher over a few hundred runs); `Bun.spawn` keeps a few. The
 * child gets exactly `env`, its own process group when `detached`, and stdin from `input` or
 * nothing. Throws like a spawn does (`code` `ENOENT` for a missing command or directory).
 */
export const nativeRun:
  | ((
      command: string,
      args: readonly string[],
      options: { cwd?: string | undefined; env: Record<string, string>; input?: string | undefined; detached: boolean },
    ) => NativeRun)
  | undefined =
  // Not on Windows, where tinyexec resolves `.cmd` shims.
  bun?.spawn && process.platform !== "win32"
    ? (command, args, options) => {
        const child = bun.spawn({
          cmd: [command, ...args],
          ...(options.cwd === undefined ? {} : { cwd: options.cwd }),
          env: options.env,
          stdin: options.input === undefined ? "ignore" : new TextEncoder().encode(options.input),
          stdout: "pipe",
          stderr: "pipe",
          detached: options.detached,
        });
        const output = (async (): Promise<NativeRunOutput> => {
          // A pipe that fails mid-read loses what it had not delivered, not the run (as with tinyexec).
          const text = (stream: ReadableStream<Uint8Array>) => new Response(stream).text().catch(() => "");
          const [stdout, stderr] = await Promise.all([text(child.stdout), text(child.stderr)]);
          const code = await child.exited;
          const signal = child.signalCode ?? undefined;
          return { stdout, stderr, exitCode: signal === undefined ? code : undefined, signal };
        })();
        return { pid: child.pid, output, kill: (signal) => child.kill(signal) };
      }
    : undefined;

/** How to install a package's dependencies: run `command args…` in the package directory with `env` added. */
export interface DependencyInstaller {
  name: "bun" | "deno" | "npm";
  command: string;
  args: string[];
  env: Record<string, string>;
}

/**
 * The dependency installer of the current runtime, so no other package manager needs to be on the
 * server: the running Bun (or this compiled executable acting as `bun`, via `BUN_BE_BUN=1`) runs
 * `bun install --production --no-save` (no lockfile needed, none written); the running Deno runs
 * `deno install` (package.json dependencies into `node_modules`); Node uses `npm install
 * --omit=dev`. `registry`, when given, overrides the user's configured npm registry for this install.
 */
export function dependencyInstaller(registry?: string): DependencyInstaller {
  const env: Record<string, string> = { NO_COLOR: "1" };
  if (bun) {
    if (isCompiledBun) env.BUN_BE_BUN = "1";
    const args = ["install", "--production", "--no-save", "--no-progress"];
    if (registry !== undefined) args.push(`--registry=${registry}`);
    return { name: "bun", command: process.execPath, args, env };
  }
  if (deno) {
    if (registry !== undefined) env.NPM_CONFIG_REGISTRY = registry;
    return { name: "deno", command: deno.execPath(), args: ["install"], env };
  }
  if (registry !== undefined) env.npm_config_registry = registry;
  return { name: "npm", command: "npm", args: ["install", "--omit=dev", "--no-audit", "--no-fund"], env };
}

/** A server started by {@link nativeServe}. */
export interface NativeServer {
  /** The address actually bound (the OS-assigned port when 0 was asked for). */
  hostname: string;
  port: number;
  /** Stops accepting and drains; `force` drops connections with requests in flight (Deno: stops waiting for them). */
  close(force: boolean): Promise<void>;
}

/**
 * Serves `handler` with the runtime's own HTTP server (`Bun.serve`, `Deno.serve`), which is
 * faster than their `node:http` layers; `undefined` on Node, where the caller uses `node:http`.
 * Throws the runtime's error (`code` `EADDRINUSE`, …) when the address cannot be bound.
 * `onError` answers for a handler that throws.
 */
export const nativeServe:
  | ((
      handler: (request: Request) => Promise<Response>,
      options: { hostname: string; port: number; onError: (error: unknown) => Response },
    ) => NativeServer)
  | undefined = bun
  ? (handler, { hostname, port, onError }) => {
      // reusePort: Bun 1.4 turns SO_REUSEPORT on with development: false, so a second agent on
      // the same port would silently share it instead of failing with EADDRINUSE.
      const server = bun.serve({
        hostname,
        port,
        development: false,
        reusePort: false,
        fetch: handler,
        error: onError,
      });
      return { hostname: server.hostname, port: server.port, close: (force) => server.stop(force) };
    }
  : deno
    ? (handler, { hostname, port, onError }) => {
        // onListen: Deno otherwise prints "Listening on …" to stdout, which is the CLI's to own.
        const server = deno.serve({ hostname, port, onListen: () => {}, onError }, handler);
        let shutdown: Promise<void> | undefined;
        // Deno cannot drop busy connections: a forced close stops waiting for them instead.
        const close = (force: boolean) => ((shutdown ??= server.shutdown()), force ? Promise.resolve() : shutdown);
        return { hostname: server.addr.hostname, port: server.addr.port, close };
      }
    : undefined;

/** How to run a script as a program with the runtime this process runs on. */
export interface ScriptCommand {
  command: string;
  args: string[];
  /** Variables to add to the child's environment. */
  env: Record<string, string>;
  /** True when the runtime itself aborts once the JS heap passes `heapMb` (V8's `--max-old-space-size`). */
  heapCapped: boolean;
}

/**
 * The argv that runs `entry` with the current runtime: `bun <entry>` (inside a `bun build
 * --compile` executable: the executable itself with `BUN_BE_BUN=1`), `deno run -A <entry>`, or
 * `node <entry>`. With `heapMb`, Node and Deno get `--max-old-space-size` (through `--v8-flags`
 * on Deno) and abort with "heap out of memory" past it; Bun has no heap cap (JavaScriptCore's
 * `forceRAMSize` only makes the GC work harder near it, oven-sh/bun#34917), so `heapCapped` is
 * false and the caller has to watch the process's memory itself.
 */
export function scriptCommand(entry: string, options: { heapMb?: number } = {}): ScriptCommand {
  const mb = options.heapMb;
  if (bun) {
    const env: Record<string, string> = {};
    if (isCompiledBun) env.BUN_BE_BUN = "1";
    if (mb !== undefined) env.BUN_JSC_forceRAMSize = String(mb * 1024 * 1024);
    return { command: process.execPath, args: [entry], env, heapCapped: false };
  }
  const flag = mb === undefined ? [] : [`--max-old-space-size=${mb}`];
  if (deno) {
    const v8 = flag.length > 0 ? [`--v8-flags=${flag[0]}`] : [];
    return { command: deno.execPath(), args: ["run", "-A", ...v8, entry], env: {}, heapCapped: mb !== undefined };
  }
  return { command: process.execPath, args: [...flag, entry], env: {}, heapCapped: mb !== undefined };
}
