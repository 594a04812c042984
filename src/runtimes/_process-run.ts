/**
 * One run of a process app (the `process` driver's building block): the command and environment
 * of the child (SPEC section 3), its output as agent log lines carrying the app and a rotating log file, the
 * memory watchdog where the runtime cannot cap its own heap, a pid file so a later agent can clean
 * up after a crash of this one, ending what it started outside its group (`_process-tree.ts`),
 * `process:spawn` telemetry, and why it exited ("out of memory (limit 64 MB)", "killed by SIGSEGV", …).
 */
import { randomUUID } from "node:crypto";
import { mkdirSync } from "node:fs";
import { rm, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { join } from "node:path";
import { connectHost, envPort } from "../_address.ts";
import { scriptCommand } from "../_platform.ts";
import { procStat, residentBytes } from "../_proc.ts";
import { spawnProcess, type ProcessExit, type SpawnedProcess } from "../exec.ts";
import type { RotatingLog } from "../log-file.ts";
import type { Logger } from "../logger.ts";
import { exportEnv } from "../process-env.ts";
import { AGE_KEY_VARIABLES } from "../secrets/env-refs.ts";
import type { AppSpec } from "../spec.ts";
import type { Emit } from "../telemetry.ts";
import type { PreparedWorkspace } from "../workspace.ts";
import { RunTree, RUN_ID_VAR, type Survivor, type TreeWatch } from "./_process-tree.ts";

/** How a run ended, as status shows it (`last_exit`). */
export interface ExitInfo {
  pid: number;
  code: number | null;
  signal: string | null;
  /** `exited with code 1`, `killed by SIGSEGV`, `out of memory (limit 64 MB)`, `stopped`. */
  reason: string;
  /** ISO-8601 time of the exit. */
  at: string;
  duration_ms: number;
  /** Descendants of the run that could not be ended (another user's process, stuck in the kernel). */
  left_running?: Survivor[];
}

/** What a pid file (`run/<app>/pids/<pid>.json`) holds, for a later agent to clean up after a crash of this one. */
export interface PidFile {
  pid: number;
  /** The child's start time (`/proc`), so a reused pid is never mistaken for it. */
  start: string | null;
  /** The run's {@link RUN_ID_VAR}. */
  run?: string;
  /** Descendants seen outside the child's process group. */
  descendants?: { pid: number; start: string }[];
}

/** What {@link startRun} needs. */
export interface RunOptions {
  spec: AppSpec;
  prepared: PreparedWorkspace;
  dataDir: string;
  /** The port exported as `PORT` (an OS-assigned one when `env.port` is 0). */
  port: number | undefined;
  /** `<local_path>/run/<app>`: pid files and the `current` symlink. */
  runDir: string;
  log: RotatingLog;
  logger: Logger;
  emit: Emit;
  /** How often RSS is compared with `limits.memory_mb` when the runtime cannot cap its heap. */
  memoryCheckMs: number;
  /** Output lines per second copied into the agent's log (the file gets every line). */
  linesPerSecond: number;
  /** How long stragglers of the group, and descendants outside it, get after the child exited before SIGKILL. */
  reapGraceMs: number;
  /** The driver's shared walk that records the run's descendants. */
  watch: TreeWatch;
}

/** A running (or ended) child of a process app. */
export interface Run {
  readonly child: SpawnedProcess;
  readonly pid: number;
  readonly dir: string;
  /** `Date.now()` at spawn. */
  readonly startedAt: number;
  /** Set before stopping it on purpose, so the exit is reported as a stop. */
  expected: boolean;
  /**
   * Ends the run: records its descendants once more (those that left the group are still under it
   * now, not after), then ends its process group (SIGTERM, SIGKILL after `graceMs`). Descendants
   * outside the group are ended once it exited (see `ended`).
   */
  stop(graceMs: number): Promise<{ killed: boolean }>;
  /** Resolves once it exited, its group is reaped and its output flushed. */
  readonly ended: Promise<ExitInfo>;
  /** The last lines it printed (stdout and stderr), for error messages. */
  tail(): string;
}

/** Longest line kept whole; longer output is cut into lines of this size. */
const MAX_LINE = 16 * 1024;
/** Output kept to explain an exit. */
const TAIL = 4096;
/** What V8 (Node, Deno) and JavaScriptCore (Bun) print when a heap runs out. */
const OOM = /heap out of memory|JavaScript out of memory|Reached heap limit|RangeError: Out of memory/i;

/** Variables of the agent's own configuration (a token, a repo URL with credentials) never reach apps. */
const AGENT_PREFIX = "BC_GITOPS_";
/** The agent's age keys (`SOPS_AGE_KEY`…) decrypt every app's secrets: no app gets them. */
const AGE_KEYS: ReadonlySet<string> = new Set(AGE_KEY_VARIABLES);

/** The argv of a run: `command` as given, else the entry with the agent's runtime. */
function commandOf(
  spec: AppSpec,
  prepared: PreparedWorkspace,
): { command: string; args: string[]; env: Record<string, string>; heapCapped: boolean } {
  const mb = spec.limits?.memory_mb;
  if (!spec.command) return scriptCommand(prepared.entry, mb === undefined ? {} : { heapMb: mb });
  const [command, ...args] = spec.command as [string, ...string[]];
  return { command, args, env: {}, heapCapped: false };
}

/**
 * The child's environment: the agent's (without its own `BC_GITOPS_*` settings), the app's `env`
 * exported (SPEC section 3; `port` is the real port), `BC_GITOPS_APP`, `_VERSION`, `_REVISION`,
 * `_DATA_DIR`, `_CURRENT` (a symlink to the revision directory that always points at the newest
 * code), `_RUN_ID` (marks everything the run starts, see `_process-tree.ts`), the runtime's own
 * variables, and for a custom `command` with `limits.memory_mb` the heap limit in `NODE_OPTIONS`
 * (and `BUN_JSC_forceRAMSize`).
 */
function childEnv(
  o: Pick<RunOptions, "spec" | "prepared" | "dataDir" | "port" | "runDir">,
  runId: string,
  extra: Record<string, string>,
): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [key, value] of Object.entries(process.env))
    if (value !== undefined && !key.startsWith(AGENT_PREFIX) && !AGE_KEYS.has(key)) env[key] = value;
  const appEnv = o.port === undefined ? o.spec.env : { ...o.spec.env, port: o.port };
  Object.assign(
    env,
    exportEnv(appEnv),
    {
      BC_GITOPS_APP: o.spec.name,
      BC_GITOPS_VERSION: o.spec.version,
      BC_GITOPS_REVISION: o.prepared.revision,
      BC_GITOPS_DATA_DIR: o.dataDir,
      BC_GITOPS_CURRENT: join(o.runDir, "current"),
      [RUN_ID_VAR]: runId,
    },
    extra,
  );
  const mb = o.spec.limits?.memory_mb;
  if (o.spec.command && mb !== undefined) {
    env.NODE_OPTIONS = [env.NODE_OPTIONS, `--max-old-space-size=${mb}`].filter(Boolean).join(" ");
    env.BUN_JSC_forceRAMSize = String(mb * 1024 * 1024);
  }
  return env;
}

/** Why a run ended, in words. */
function exitReason(
  exit: ProcessExit,
  facts: { tail: string; limitMb?: number; memoryKilled: boolean; expected: boolean },
): string {
  const limit = facts.limitMb === undefined ? "" : ` (limit ${facts.limitMb} MB)`;
  if (facts.memoryKilled || ((exit.signal !== null || exit.code !== 0) && OOM.test(facts.tail)))
    return `out of memory${limit}`;
  if (facts.expected) return exit.signal ? `stopped (${exit.signal})` : `stopped (exit code ${exit.code})`;
  return exit.signal ? `killed by ${exit.signal}` : `exited with code ${exit.code}`;
}

/** Spawns one run of the app in `o.prepared.dir` and wires its output, watchdog and pid file. Throws `E_EXEC` when it cannot spawn. */
export async function startRun(o: RunOptions): Promise<Run> {
  const { spec, prepared } = o;
  const app = spec.name;
  const cmd = commandOf(spec, prepared);
  mkdirSync(join(o.runDir, "pids"), { recursive: true }); // synchronous: see _fs-sync.ts
  const runId = randomUUID();
  const child = await spawnProcess(cmd.command, cmd.args, { cwd: prepared.dir, env: childEnv(o, runId, cmd.env) });
  const pid = child.pid;
  const startedAt = Date.now();
  note(o.log, `started pid ${pid}: ${app} ${spec.version} (${prepared.revision}) in ${prepared.dir}`);
  // Read the output before anything else is awaited: an app that prints why it refuses to start
  // and exits at once must have that in its start error (on Deno, output a child wrote before its
  // pipes were listened to could be missing once the run ended).
  let tail = "";
  const output = wireOutput(child, o, pid, (text) => void (tail = (tail + text).slice(-TAIL)));
  const pidFile = join(o.runDir, "pids", `${pid}.json`);
  const stat = await procStat(pid);
  const saved: PidFile = { pid, start: stat?.startTime ?? null, run: runId };
  await writeFile(pidFile, JSON.stringify(saved)).catch(() => {});
  const tree = new RunTree(pid, runId, {
    rootAlive: () => child.exit === undefined,
    persist: (descendants) => writeFile(pidFile, JSON.stringify({ ...saved, descendants } satisfies PidFile)),
  });
  o.watch.add(tree);
  o.emit("bc_gitops:process:spawn", {}, { app, pid, version: spec.version, revision: prepared.revision });

  // Bun cannot cap its heap: the agent watches the resident size of what it started itself.
  const limitMb = spec.limits?.memory_mb;
  let memoryKilled = false;
  const watchdog =
    limitMb !== undefined && !cmd.heapCapped && !spec.command
      ? setInterval(async () => {
          const rss = await residentBytes(pid);
          if (rss === undefined || rss <= limitMb * 1024 * 1024 || memoryKilled) return;
          memoryKilled = true;
          o.logger.warn(`uses ${Math.round(rss / 1048576)} MB, over its limit of ${limitMb} MB: killing pid ${pid}`, {
            app,
          });
          child.killGroup("SIGKILL");
        }, o.memoryCheckMs)
      : undefined;
  watchdog?.unref?.();

  const run: Run = {
    child,
    pid,
    dir: prepared.dir,
    startedAt,
    expected: false,
    stop: async (graceMs) => {
      if (child.exit === undefined) await tree.sample();
      return child.terminate(graceMs);
    },
    tail: () => tail.trim().split("\n").slice(-5).join(" | ").slice(-1500),
    ended: child.exited.then(async (exit) => {
      clearInterval(watchdog);
      // Whatever else of the group still runs goes too: the app is its main process. Then what it
      // started outside the group, before the pid file goes (an agent killed meanwhile leaves it to the next one).
      await child.terminate(o.reapGraceMs);
      o.watch.delete(tree);
      await tree.close();
      const { survivors } = await tree.end(o.reapGraceMs);
      await output;
      await rm(pidFile, { force: true });
      const reason = exitReason(exit, {
        tail,
        ...(limitMb === undefined ? {} : { limitMb }),
        memoryKilled,
        expected: run.expected,
      });
      const info: ExitInfo = {
        pid,
        code: exit.code,
        signal: exit.signal,
        reason,
        at: new Date().toISOString(),
        duration_ms: Math.round(exit.durationMs),
      };
      if (survivors.length > 0) {
        info.left_running = survivors;
        const list = survivors.map((s) => `pid ${s.pid} (${s.reason})`).join(", ");
        o.logger.warn(`could not end what pid ${pid} started: ${list}`, { app });
        note(o.log, `could not end ${list}`);
      }
      note(o.log, `pid ${pid} ${reason} after ${(exit.durationMs / 1000).toFixed(1)} s`);
      return info;
    }),
  };
  return run;
}

/** How long the output of an exited run may take to arrive before it is given up on. */
const OUTPUT_GRACE_MS = 5000;

/**
 * Splits the child's stdout and stderr into lines for the agent's log (with the app as a field, at most
 * `linesPerSecond` a second, the rest counted) and the log file (timestamped, stderr marked).
 * A full file queue pauses the pipes, so a slow disk slows the app, never the agent. Resolves when
 * both pipes ended (bounded: a pipe held open by a killed group's leftover is given up on).
 */
function wireOutput(child: SpawnedProcess, o: RunOptions, pid: number, keep: (text: string) => void): Promise<void> {
  let window = 0;
  let shown = 0;
  let dropped = 0;
  const toAgent = (line: string, stream: "stdout" | "stderr") => {
    const second = Math.floor(Date.now() / 1000);
    if (second !== window) {
      if (dropped > 0)
        o.logger.warn(`${dropped} output line(s) not shown here; all are in ${o.log.path}`, { app: o.spec.name });
      window = second;
      shown = 0;
      dropped = 0;
    }
    if (++shown > o.linesPerSecond) dropped++;
    else o.logger.info(line, { app: o.spec.name, pid, stream });
  };
  const pipe = (stream: NodeJS.ReadableStream & { pause(): void; resume(): void }, name: "stdout" | "stderr") =>
    new Promise<void>((resolve) => {
      let partial = "";
      const mark = name === "stderr" ? " [stderr]" : "";
      const emit = (lines: string[]) => {
        if (lines.length === 0) return;
        const at = new Date().toISOString();
        for (const line of lines) toAgent(line, name);
        if (!o.log.write(lines.map((line) => `${at}${mark} ${line}\n`).join(""))) {
          stream.pause();
          void o.log.drained().then(() => stream.resume());
        }
      };
      stream.setEncoding("utf8");
      stream.on("data", (chunk: string) => {
        keep(chunk);
        const parts = (partial + chunk).split("\n");
        partial = parts.pop() ?? "";
        while (partial.length > MAX_LINE) {
          parts.push(partial.slice(0, MAX_LINE));
          partial = partial.slice(MAX_LINE);
        }
        emit(parts.map((line) => (line.endsWith("\r") ? line.slice(0, -1) : line)));
      });
      const done = () => {
        if (partial !== "") emit([partial]);
        partial = "";
        resolve();
      };
      stream.once("end", done);
      stream.once("close", done);
      stream.once("error", done);
    });
  const both = Promise.all([pipe(child.stdout, "stdout"), pipe(child.stderr, "stderr")]).then(() => {});
  // After the exit and the reaping, a pipe can only stay open through a process outside the group.
  // The deadline is generous (a loaded machine can take seconds to deliver the last output, which
  // the start error quotes) and not unref'd: someone awaits this, and Deno ends a test whose only
  // pending work is an unref'd timer ("the event loop has already resolved").
  return child.exited.then(() => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const deadline = new Promise<void>((resolve) => (timer = setTimeout(resolve, OUTPUT_GRACE_MS)));
    return Promise.race([both, deadline]).finally(() => clearTimeout(timer));
  });
}

/** A line of the agent's own in the app's log file. */
export function note(log: RotatingLog, text: string): void {
  log.write(`${new Date().toISOString()} [bc-gitops] ${text}\n`);
}

/** The port the child gets as `PORT`: `env.port`, a free one when it is 0, none without (see `_address.ts`). */
export async function portFor(spec: AppSpec): Promise<number | undefined> {
  const port = envPort(spec.env, spec.name);
  if (port !== 0) return port;
  // The child cannot tell us which port the OS gave it, so it gets one that was free a moment ago.
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, connectHost(spec.env), () => {
      const address = server.address();
      server.close(() =>
        typeof address === "object" && address ? resolve(address.port) : reject(new Error("no port")),
      );
    });
  });
}
