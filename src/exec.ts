/**
 * The one subprocess runner of bc-gitops (the only module that imports tinyexec; on Bun, short-lived
 * children go through Bun's own spawn, see `nativeRun` in _platform.ts). Commands are
 * always an argument vector, never a shell string; every call has a timeout, honours an
 * AbortSignal, and reports failures as {@link GitopsError}s whose text is redacted.
 * {@link spawnProcess} starts the long-running children that process isolation supervises.
 */
import { spawn } from "node:child_process";
import { stat } from "node:fs/promises";
import { basename } from "node:path";
import { setTimeout as setTimer, clearTimeout as clearTimer } from "node:timers";
import { x } from "tinyexec";
import type { Output, Result } from "tinyexec";
import { GitopsError } from "./errors.ts";
import type { ErrorCode, RetryClass } from "./errors.ts";
import { redact } from "./redact.ts";
import { nativeRun } from "./_platform.ts";
import { groupMembers, hasProc } from "./_proc.ts";
import type { Readable, Writable } from "node:stream";

/** Options of {@link exec}. */
export interface ExecOptions {
  /** Working directory of the child (default: the current one). */
  cwd?: string;
  /** Variables merged over `process.env`; an `undefined` value removes an inherited variable. */
  env?: Record<string, string | undefined>;
  /** Deadline of the whole call (default 60 000 ms); on expiry the child is killed and `E_TIMEOUT` thrown. */
  timeoutMs?: number;
  /** Aborting kills the child and throws `E_ABORTED`. */
  signal?: AbortSignal;
  /** Text written to the child's stdin (otherwise stdin is `/dev/null`, so nothing can prompt). */
  input?: string;
  /** Exit codes that are not errors (default `[0]`). */
  allowExitCodes?: readonly number[];
}

/** What a finished child produced. */
export interface ExecResult {
  stdout: string;
  stderr: string;
  exitCode: number;
  durationMs: number;
}

/** Default deadline of one subprocess call. */
export const DEFAULT_TIMEOUT_MS = 60_000;

/** Longest stderr tail kept in messages and `details`. */
const TAIL_CHARS = 2000;

/** After a kill, how long to wait for the child's pipes to close before giving up on them. */
const KILL_GRACE_MS = 5000;

const isWindows = process.platform === "win32";

/** Process groups still running, killed if this process exits normally while they run. */
const liveGroups = new Set<number>();
let exitHookInstalled = false;

/**
 * Runs `command` with `args` and resolves with its output once it has exited with an allowed code.
 *
 * Throws a {@link GitopsError}: `E_EXEC` for a disallowed exit code or death by a signal (message
 * `git fetch failed (exit 128): <stderr tail>`), or when the command cannot be spawned (not found on
 * PATH, not executable, missing cwd); `E_TIMEOUT` after `timeoutMs`; `E_ABORTED` when `signal`
 * aborts. Messages and `details` (`command`, `args`, `exitCode`, `stderr`) pass through
 * {@link redact}. On POSIX the child leads its own process group and timeouts/aborts kill the
 * whole group, so grandchildren (ssh, git-remote-https) cannot linger or hold the pipes open.
 */
export async function exec(command: string, args: readonly string[], options: ExecOptions = {}): Promise<ExecResult> {
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const allowed = options.allowExitCodes ?? [0];
  const label = labelOf(command, args);
  const fail = (
    message: string,
    code: ErrorCode,
    extra: Record<string, unknown>,
    cause?: unknown,
    retry?: RetryClass,
  ) =>
    new GitopsError(redact(message), {
      code,
      ...(retry === undefined ? {} : { retry }),
      cause,
      details: { command, args: args.map(redact), exitCode: null, stderr: "", ...extra },
    });

  if (options.signal?.aborted) throw fail(`${label} was aborted before it started`, "E_ABORTED", {});

  const started = performance.now();
  let proc: Child;
  try {
    proc = startChild(command, args, options);
  } catch (error) {
    throw await spawnError(command, options.cwd, error, fail);
  }
  const pid = proc.pid;
  if (pid !== undefined && !isWindows) trackGroup(pid);

  let stopped: "timeout" | "abort" | undefined;
  let giveUp: (() => void) | undefined;
  const kill = (why: "timeout" | "abort") => {
    if (stopped) return;
    stopped = why;
    killTree(proc);
    giveUp?.();
  };
  const timer = setTimer(() => kill("timeout"), timeoutMs);
  const onAbort = () => kill("abort");
  options.signal?.addEventListener("abort", onAbort, { once: true });

  let output: ChildOutput | undefined;
  let spawnFailure: unknown;
  try {
    output = await new Promise<ChildOutput>((resolve, reject) => {
      proc.output.then(resolve, reject);
      // Pipes inherited by a process that escaped the group could keep `close` from ever firing.
      giveUp = () => {
        setTimer(
          () => reject(new Error("the child's output did not close after it was killed")),
          KILL_GRACE_MS,
        ).unref();
      };
      if (stopped) giveUp();
    });
  } catch (error) {
    spawnFailure = error;
  } finally {
    clearTimer(timer);
    options.signal?.removeEventListener("abort", onAbort);
    if (pid !== undefined) liveGroups.delete(pid);
  }

  const durationMs = performance.now() - started;
  const stderr = output?.stderr ?? "";
  const stdout = output?.stdout ?? "";
  const tail = tailOf(stderr);
  if (stopped === "timeout") {
    throw fail(`${label} timed out after ${timeoutMs} ms${tail ? `: ${tail}` : ""}`, "E_TIMEOUT", {
      stderr: redact(tail),
      timeoutMs,
    });
  }
  if (stopped === "abort") {
    throw fail(`${label} was aborted`, "E_ABORTED", { stderr: redact(tail) }, options.signal?.reason);
  }
  if (spawnFailure !== undefined || !output) throw await spawnError(command, options.cwd, spawnFailure, fail);

  const exitCode = output.exitCode;
  if (exitCode === undefined) {
    const signal = output.signal ?? "a signal";
    throw fail(`${label} was killed by ${signal}${tail ? `: ${tail}` : ""}`, "E_EXEC", {
      stderr: redact(tail),
      signal,
    });
  }
  if (!allowed.includes(exitCode)) {
    const shown = tail || tailOf(stdout);
    throw fail(`${label} failed (exit ${exitCode})${shown ? `: ${shown}` : ""}`, "E_EXEC", {
      exitCode,
      stderr: redact(tail),
    });
  }
  return { stdout, stderr, exitCode, durationMs };
}

/** What a finished child of {@link exec} produced (`exitCode` `undefined`: a signal ended it). */
interface ChildOutput {
  stdout: string;
  stderr: string;
  exitCode: number | undefined;
  signal: string | undefined;
}

/** A child of {@link exec}, however it was started. */
interface Child {
  pid: number | undefined;
  output: Promise<ChildOutput>;
  kill(signal: NodeJS.Signals): void;
}

/**
 * Starts `command`: on its own process group (POSIX), stdin from `input` or nothing, `env` merged
 * over `process.env` (an `undefined` value removes a variable). Bun's own spawn where there is
 * one (see `nativeRun`), else tinyexec over `node:child_process`. Throws when it cannot spawn.
 */
function startChild(command: string, args: readonly string[], options: ExecOptions): Child {
  if (nativeRun) {
    const env: Record<string, string> = {};
    for (const [name, value] of Object.entries({ ...process.env, ...options.env }))
      if (value !== undefined) env[name] = value;
    const run = nativeRun(command, args, { cwd: options.cwd, env, input: options.input, detached: !isWindows });
    return { pid: run.pid, output: run.output, kill: (signal) => run.kill(signal) };
  }
  const proc: Result = x(command, args, {
    nodePath: false, // never let a node_modules/.bin shadow a system tool such as git
    throwOnError: false,
    ...(options.input === undefined ? {} : { stdin: options.input }),
    nodeOptions: {
      ...(options.cwd === undefined ? {} : { cwd: options.cwd }),
      // tinyexec spreads process.env first, so undefined values here unset inherited variables.
      ...(options.env === undefined ? {} : { env: options.env as NodeJS.ProcessEnv }),
      detached: !isWindows,
      stdio: [options.input === undefined ? "ignore" : "pipe", "pipe", "pipe"],
    },
  });
  // A child that exits without reading its input makes the write fail; that is not our error.
  proc.process?.stdin?.on("error", () => {});
  const output = Promise.resolve(proc).then((out: Output) => ({
    stdout: out.stdout,
    stderr: out.stderr,
    exitCode: out.exitCode,
    signal: out.exitCode === undefined ? (proc.signalCode ?? undefined) : undefined,
  }));
  return { pid: proc.pid, output, kill: (signal) => proc.kill(signal) };
}

/** `git fetch`: the command's base name and its first argument, enough to say what failed. */
function labelOf(command: string, args: readonly string[]): string {
  const first = args[0];
  const name = basename(command);
  if (first === undefined) return name;
  return `${name} ${first.length > 60 ? `${first.slice(0, 57)}...` : first}`;
}

/** The last lines of `text`, trimmed, at most {@link TAIL_CHARS} characters. */
function tailOf(text: string): string {
  const trimmed = text.trim();
  if (trimmed.length <= TAIL_CHARS) return trimmed;
  const cut = trimmed.slice(-TAIL_CHARS);
  const newline = cut.indexOf("\n");
  return `...${newline >= 0 && newline < cut.length - 1 ? cut.slice(newline + 1) : cut}`;
}

type Fail = (message: string, code: ErrorCode, extra: Record<string, unknown>, cause?: unknown) => GitopsError;

/** Explains why a child could not be started (spawn reports a missing cwd as a missing command). */
async function spawnError(command: string, cwd: string | undefined, error: unknown, fail: Fail): Promise<GitopsError> {
  const code = (error as { code?: unknown } | undefined)?.code;
  if (code === "ENOENT" && cwd !== undefined && !(await isDirectory(cwd))) {
    return fail(`cannot run ${command}: working directory ${cwd} does not exist`, "E_EXEC", {}, error);
  }
  if (code === "ENOENT") {
    const where = command.includes("/") || command.includes("\\") ? "does not exist" : "was not found on PATH";
    return fail(`cannot run ${command}: ${command} ${where}`, "E_EXEC", {}, error);
  }
  if (code === "EACCES")
    return fail(`cannot run ${command}: permission denied (is it executable?)`, "E_EXEC", {}, error);
  const reason = error instanceof Error ? error.message : String(error);
  return fail(`cannot run ${command}: ${reason}`, "E_EXEC", {}, error);
}

async function isDirectory(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isDirectory();
  } catch {
    return false;
  }
}

/** SIGKILL the child's whole process group (POSIX), or the child alone where groups do not exist. */
function killTree(proc: Child): void {
  const pid = proc.pid;
  if (pid !== undefined && !isWindows) {
    try {
      process.kill(-pid, "SIGKILL");
      return;
    } catch {
      // The group is already gone, or the child did not get its own group: fall back to the child.
    }
  }
  try {
    proc.kill("SIGKILL");
  } catch {
    // Already exited.
  }
}

/** Detached groups do not receive the terminal's signals; make sure a normal exit still ends them. */
function trackGroup(pid: number): void {
  liveGroups.add(pid);
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once("exit", () => {
    for (const group of liveGroups) {
      try {
        process.kill(-group, "SIGKILL");
      } catch {
        // Already gone.
      }
    }
  });
}

/** Options of {@link spawnProcess}. */
export interface SpawnOptions {
  /** Working directory of the child (default: the current one). */
  cwd?: string;
  /** The child's complete environment: nothing is merged in, so the caller decides what it inherits. */
  env: Record<string, string>;
  /** `pipe` gives the child a stdin to write to ({@link SpawnedProcess.stdin}); default `/dev/null`. */
  stdin?: "ignore" | "pipe";
  /** A helper that must not keep this process alive by itself (it is still ended with it). */
  background?: boolean;
}

/** How a long-running child ended: an exit code, or the signal that killed it. */
export interface ProcessExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** From spawn to exit. */
  durationMs: number;
}

/** A long-running child started by {@link spawnProcess}, leading its own process group (POSIX). */
export interface SpawnedProcess {
  readonly pid: number;
  /** The child's input, when spawned with `stdin: "pipe"` (else null). */
  readonly stdin: Writable | null;
  /** The child's output, not yet consumed: read it, or the child blocks once the pipe is full. */
  readonly stdout: Readable;
  readonly stderr: Readable;
  /** Resolves once the child itself exited (its process group may outlive it). Never rejects. */
  readonly exited: Promise<ProcessExit>;
  /** How it exited, once it has. */
  readonly exit: ProcessExit | undefined;
  /** Sends `signal` to the child alone (e.g. a reload signal). False when it is gone. */
  signal(signal: NodeJS.Signals): boolean;
  /** Sends `signal` to the child's whole process group. False when nothing of it is left. */
  killGroup(signal: NodeJS.Signals): boolean;
  /** True while the child or anything else in its group still runs (zombies do not count where `/proc` tells). */
  groupAlive(): Promise<boolean>;
  /**
   * Ends the whole group: SIGTERM, then SIGKILL once `graceMs` passed with anything of it still
   * running. Resolves when the child has exited and its group is empty (at most about 5 s after the
   * SIGKILL), with `killed: true` when SIGKILL was needed. Safe to call more than once.
   */
  terminate(graceMs: number): Promise<{ killed: boolean }>;
}

/** How often {@link endGroup} looks whether the group is gone. */
const GROUP_POLL_MS = 50;

/** The leader of a group when it is a child of this process: its exit ends waits early, and it is a zombie until reaped. */
export interface GroupLeader {
  /** Resolves once the leader exited. */
  readonly exited: Promise<unknown>;
  /** True until the leader's exit was seen. */
  running(): boolean;
  /** Sends `signal` to the group (to the child alone where there are no groups); false when nothing is left. */
  kill(signal: NodeJS.Signals): boolean;
}

/**
 * Ends process group `pgid` (POSIX; with `leader` also where groups do not exist): SIGTERM, then
 * polls until the group is empty; SIGKILL once `graceMs` passed with anything of it still running,
 * then waits (at most about 5 s) until the group is empty. Pass `leader` when the group's leader is
 * a child of this process; without it (a group a previous agent left) the leader is someone
 * else's child. Resolves with `killed: true` when SIGKILL was needed; never rejects.
 */
export async function endGroup(pgid: number, graceMs: number, leader?: GroupLeader): Promise<{ killed: boolean }> {
  const kill = (signal: NodeJS.Signals) => (leader ? leader.kill(signal) : signalTo(-pgid, signal));
  const wait = (ms: number) => {
    const pause = new Promise<void>((resolve) => setTimer(resolve, ms));
    return leader ? Promise.race([leader.exited, pause]) : pause;
  };
  if (!(await groupAlive(pgid, leader))) return { killed: false };
  kill("SIGTERM");
  const deadline = performance.now() + graceMs;
  for (;;) {
    const left = deadline - performance.now();
    if (left <= 0) break;
    await wait(Math.min(GROUP_POLL_MS, left));
    if (!(await groupAlive(pgid, leader))) return { killed: false };
  }
  kill("SIGKILL");
  const until = performance.now() + KILL_GRACE_MS;
  while ((await groupAlive(pgid, leader)) && performance.now() < until) await wait(GROUP_POLL_MS);
  return { killed: true };
}

/** True while anything of group `pgid` runs, or its `leader` has not been seen to exit; zombies do not count where `/proc` tells. */
async function groupAlive(pgid: number, leader?: GroupLeader): Promise<boolean> {
  if (leader?.running()) return true;
  if (isWindows || !signalTo(-pgid, 0)) return false;
  // kill(-pgid, 0) also succeeds for zombies nobody reaps; /proc tells them apart.
  return !hasProc || (await groupMembers(pgid)).length > 0;
}

/** `process.kill` that reports instead of throwing: false when the target is gone (or not ours). */
function signalTo(target: number, signal: NodeJS.Signals | 0): boolean {
  try {
    process.kill(target, signal);
    return true;
  } catch {
    return false;
  }
}

/**
 * Starts `command args…` as a long-running child with piped stdout/stderr (stdin `/dev/null` unless piped)
 * and resolves once it runs. On POSIX it leads a new process group (and session), so
 * {@link SpawnedProcess.terminate} reaches every process it started, and a normal exit of this
 * process kills whatever group is still running. Throws a {@link GitopsError} `E_EXEC` when the
 * command cannot be spawned (not found on PATH, not executable, missing cwd).
 */
export async function spawnProcess(
  command: string,
  args: readonly string[],
  options: SpawnOptions,
): Promise<SpawnedProcess> {
  const fail: Fail = (message, code, extra, cause) =>
    new GitopsError(redact(message), { code, cause, details: { command, args: args.map(redact), ...extra } });
  const started = performance.now();
  const child = spawn(command, [...args], {
    ...(options.cwd === undefined ? {} : { cwd: options.cwd }),
    env: options.env,
    detached: !isWindows,
    stdio: [options.stdin ?? "ignore", "pipe", "pipe"],
    windowsHide: true,
  });
  let exit: ProcessExit | undefined;
  const exited = new Promise<ProcessExit>((resolve) => {
    child.once("exit", (code, signal) => resolve((exit = { code, signal, durationMs: performance.now() - started })));
  });
  try {
    await new Promise<void>((resolve, reject) => {
      child.once("spawn", resolve);
      child.once("error", reject);
    });
  } catch (error) {
    throw await spawnError(command, options.cwd, error, fail);
  }
  // Later errors (a failed kill) are reported through the exit; an unhandled 'error' event would crash us.
  child.on("error", () => {});
  const pid = child.pid!;
  if (!isWindows) trackGroup(pid);
  if (options.background) {
    child.unref();
    for (const stream of [child.stdin, child.stdout, child.stderr])
      (stream as { unref?: () => void } | null)?.unref?.();
  }

  const leader: GroupLeader = {
    exited,
    running: () => exit === undefined,
    kill: (signal) => (isWindows ? exit === undefined && child.kill(signal) : signalTo(-pid, signal)),
  };
  let terminating: Promise<{ killed: boolean }> | undefined;
  const terminate = (graceMs: number) =>
    (terminating ??= endGroup(pid, graceMs, leader).finally(() => {
      if (exit) liveGroups.delete(pid);
    }));

  // A child that exits while input is being written makes the write fail; its exit tells why.
  child.stdin?.on("error", () => {});
  return {
    pid,
    stdin: child.stdin ?? null,
    stdout: child.stdout!,
    stderr: child.stderr!,
    exited,
    get exit() {
      return exit;
    },
    signal: (signal) => exit === undefined && signalTo(pid, signal),
    killGroup: leader.kill,
    groupAlive: () => groupAlive(pid, leader),
    terminate,
  };
}
