/**
 * The one subprocess runner of bc-gitops (the only module that imports tinyexec). Commands are
 * always an argument vector, never a shell string; every call has a timeout, honours an
 * AbortSignal, and reports failures as {@link GitopsError}s whose text is redacted.
 */
import { stat } from "node:fs/promises";
import { basename } from "node:path";
import { setTimeout as setTimer, clearTimeout as clearTimer } from "node:timers";
import { x } from "tinyexec";
import type { Output, Result } from "tinyexec";
import { GitopsError } from "./errors.ts";
import type { ErrorCode, RetryClass } from "./errors.ts";
import { redact } from "./redact.ts";

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
export async function exec(
  command: string,
  args: readonly string[],
  options: ExecOptions = {},
): Promise<ExecResult> {
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const allowed = options.allowExitCodes ?? [0];
  const label = labelOf(command, args);
  const fail = (message: string, code: ErrorCode, extra: Record<string, unknown>, cause?: unknown, retry?: RetryClass) =>
    new GitopsError(redact(message), {
      code,
      ...(retry === undefined ? {} : { retry }),
      cause,
      details: { command, args: args.map(redact), exitCode: null, stderr: "", ...extra },
    });

  if (options.signal?.aborted) throw fail(`${label} was aborted before it started`, "E_ABORTED", {});

  const started = performance.now();
  let proc: Result;
  try {
    proc = x(command, args, {
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
  } catch (error) {
    throw await spawnError(command, options.cwd, error, fail);
  }
  // A child that exits without reading its input makes the write fail; that is not our error.
  proc.process?.stdin?.on("error", () => {});
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

  let output: Output | undefined;
  let spawnFailure: unknown;
  try {
    output = await new Promise<Output>((resolve, reject) => {
      proc.then(resolve, reject);
      // Pipes inherited by a process that escaped the group could keep `close` from ever firing.
      giveUp = () => {
        setTimer(() => reject(new Error("the child's output did not close after it was killed")), KILL_GRACE_MS).unref();
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
    throw fail(`${label} timed out after ${timeoutMs} ms${tail ? `: ${tail}` : ""}`, "E_TIMEOUT", { stderr: redact(tail), timeoutMs });
  }
  if (stopped === "abort") {
    throw fail(`${label} was aborted`, "E_ABORTED", { stderr: redact(tail) }, options.signal?.reason);
  }
  if (spawnFailure !== undefined || !output) throw await spawnError(command, options.cwd, spawnFailure, fail);

  const exitCode = output.exitCode;
  if (exitCode === undefined) {
    const signal = proc.signalCode ?? "a signal";
    throw fail(`${label} was killed by ${signal}${tail ? `: ${tail}` : ""}`, "E_EXEC", { stderr: redact(tail), signal });
  }
  if (!allowed.includes(exitCode)) {
    const shown = tail || tailOf(stdout);
    throw fail(`${label} failed (exit ${exitCode})${shown ? `: ${shown}` : ""}`, "E_EXEC", { exitCode, stderr: redact(tail) });
  }
  return { stdout, stderr, exitCode, durationMs };
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
  if (code === "EACCES") return fail(`cannot run ${command}: permission denied (is it executable?)`, "E_EXEC", {}, error);
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
function killTree(proc: Result): void {
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
