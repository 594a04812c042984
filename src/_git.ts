/**
 * How bc-gitops runs git, in one place: the environment of every git call (no prompts, C messages,
 * no inherited repository, pinned transports), the URL rules (local path or remote, which
 * transport), the shape of a commit id, and the reading of a failed call that tells a local disk
 * problem apart from everything else. Every git process of the agent starts through
 * {@link runGit}.
 */
import { dirname } from "node:path";
import { GitopsError, messageOf } from "./errors.ts";
import { exec, spawnProcess } from "./exec.ts";
import type { ExecResult, SpawnedProcess } from "./exec.ts";
import { redact, registerUrlCredentials } from "./redact.ts";

/** The git executable every call runs: `git` from PATH (see {@link useGitCommand}). */
let gitCommand = "git";

/**
 * Runs `command` instead of `git` from PATH for every git call of this module instance, and
 * returns the one it replaces (to put back). @internal For tests: a logging or failing shim,
 * without changing PATH, which test files running in parallel in one process share.
 */
export function useGitCommand(command: string): string {
  const previous = gitCommand;
  gitCommand = command;
  return previous;
}

/** A full object name as git prints it: SHA-1 (40 lowercase hex digits) or SHA-256 (64). */
export const FULL_SHA = /^(?:[0-9a-f]{40}|[0-9a-f]{64})$/;

/** {@link FULL_SHA} in either case, for commit ids people write (a spec's `ref`). */
export const FULL_SHA_ANY_CASE = new RegExp(FULL_SHA.source, "i");

/**
 * The transports any git call may use. `ext::` and `fd::` run commands or talk to arbitrary file
 * descriptors, and a host's git config may allow them: GIT_ALLOW_PROTOCOL overrides that config.
 * Plain `http` is added only for a call whose URL is `http://` (see {@link runGit}).
 */
const ALLOWED_TRANSPORTS = ["https", "ssh", "git", "file"] as const;

/** Variables that would point git at another repository, index or object store; always unset. */
const FOREIGN_REPOSITORY = [
  "GIT_DIR",
  "GIT_WORK_TREE",
  "GIT_INDEX_FILE",
  "GIT_OBJECT_DIRECTORY",
  "GIT_ALTERNATE_OBJECT_DIRECTORIES",
  "GIT_COMMON_DIR",
  "GIT_NAMESPACE",
] as const;

/** Options of {@link runGit}. */
export interface RunGitOptions {
  /** Working directory of git; it looks for a repository there and, by default, no higher. */
  cwd: string;
  /** Repository discovery never climbs into this directory (default: the parent of `cwd`). */
  ceiling?: string;
  /** The remote this call talks to: `http` is allowed only when it is an `http://` URL, and its password is registered for redaction. */
  url?: string;
  /** Deadline of the call (E_TIMEOUT after it). */
  timeoutMs: number;
  /** Aborting kills git and throws E_ABORTED. */
  signal?: AbortSignal | undefined;
  /** Set over the shared environment (GIT_DIR, GIT_WORK_TREE, pinned config); cannot widen the allowed transports. */
  env?: Record<string, string | undefined>;
  /** Exit codes that are not errors (default `[0]`). */
  allowExitCodes?: readonly number[];
}

/**
 * Runs `git args…` through {@link exec} with the agent's git environment: never a prompt (no
 * terminal prompt, askpass fails unless the operator set GIT_ASKPASS, ssh never asks), C messages
 * (the error readers below match English text), none of the inherited variables that name another
 * repository, no repository discovery above `cwd`, and GIT_ALLOW_PROTOCOL pinned to
 * https:ssh:git:file (plus http for an `http://` `url`). Throws what exec throws.
 */
export function runGit(args: readonly string[], options: RunGitOptions): Promise<ExecResult> {
  return exec(gitCommand, args, {
    cwd: options.cwd,
    timeoutMs: options.timeoutMs,
    ...(options.signal ? { signal: options.signal } : {}),
    ...(options.allowExitCodes ? { allowExitCodes: options.allowExitCodes } : {}),
    env: gitEnv(options),
  });
}

/**
 * Starts `git args…` as a long-lived child with a piped stdin (a `cat-file --batch` reader), in the
 * same environment as {@link runGit}. The caller ends it ({@link SpawnedProcess.terminate}).
 */
export function spawnGit(
  args: readonly string[],
  options: Omit<RunGitOptions, "timeoutMs" | "signal">,
): Promise<SpawnedProcess> {
  const env: Record<string, string> = {};
  for (const [name, value] of Object.entries({ ...process.env, ...gitEnv(options) })) {
    if (value !== undefined) env[name] = value;
  }
  return spawnProcess(gitCommand, args, { cwd: options.cwd, env, stdin: "pipe", background: true });
}

/** The variables every git call gets over the inherited environment (`undefined`: unset). */
function gitEnv(options: Pick<RunGitOptions, "cwd" | "ceiling" | "url" | "env">): Record<string, string | undefined> {
  if (options.url !== undefined) registerUrlCredentials(options.url);
  const allowed = [
    ...ALLOWED_TRANSPORTS,
    ...(options.url !== undefined && transportOf(options.url) === "http" ? ["http"] : []),
  ];
  return {
    GIT_TERMINAL_PROMPT: "0",
    GIT_ASKPASS: process.env.GIT_ASKPASS || "false",
    SSH_ASKPASS_REQUIRE: "never",
    LC_ALL: "C",
    GIT_CEILING_DIRECTORIES: options.ceiling ?? dirname(options.cwd),
    ...Object.fromEntries(FOREIGN_REPOSITORY.map((name) => [name, undefined])),
    ...options.env,
    GIT_ALLOW_PROTOCOL: allowed.join(":"),
  };
}

/**
 * Whether a repository URL is a local path, by git's own rule: not `scheme://…`, not
 * `transport::address`, and not scp-style `host:path` (a colon before any slash). A Windows drive
 * (`C:\…`) is a path on Windows only, as in git.
 */
export function isLocalPath(url: string): boolean {
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(url) || /^[a-z][a-z0-9+.-]*::/i.test(url)) return false;
  if (process.platform === "win32" && /^[a-z]:[\\/]/i.test(url)) return true;
  const colon = url.indexOf(":");
  const slash = url.indexOf("/");
  return !(colon > 0 && (slash < 0 || colon < slash));
}

/**
 * The transport git picks for `url`, by the name `protocol.<name>.allow` uses: the helper of
 * `name::address`, the scheme of `scheme://…` (`git+ssh`/`ssh+git` are `ssh`), `file` for a local
 * path and `ssh` for `host:path`.
 */
export function transportOf(url: string): string {
  const helper = /^([a-z][a-z0-9+.-]*)::/i.exec(url)?.[1];
  if (helper !== undefined) return helper.toLowerCase();
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(url)?.[1]?.toLowerCase();
  if (scheme !== undefined) return scheme === "git+ssh" || scheme === "ssh+git" ? "ssh" : scheme;
  return isLocalPath(url) ? "file" : "ssh";
}

/** Why git would refuse `url`'s transport under {@link runGit} (e.g. `ext::`), or undefined when it is allowed. */
export function refusedTransport(url: string): string | undefined {
  const transport = transportOf(url);
  if (transport === "http" || (ALLOWED_TRANSPORTS as readonly string[]).includes(transport)) return undefined;
  return `it uses the "${transport}" transport; only https://, http://, ssh://, git://, host:path and local paths are allowed`;
}

/**
 * Why `branch` is not a valid branch name (the rules of `git check-ref-format --branch`), or
 * `undefined` when it is.
 */
export function invalidBranch(branch: unknown): string | undefined {
  if (typeof branch !== "string" || branch === "") return "it is empty";
  return BRANCH_RULES.find(([pattern]) => pattern.test(branch))?.[1];
}

const BRANCH_RULES: [RegExp, string][] = [
  [/^-/, 'it starts with "-"'],
  [/^HEAD$/, '"HEAD" is not a branch'],
  [/[\u0000-\u0020\u007f~^:?*[\\]/, "it contains a space, a control character or one of ~ ^ : ? * [ \\"],
  [/\.\.|@\{/, 'it contains ".." or "@{"'],
  [/^\/|\/$|\/\//, "it has an empty path component"],
  [/\.$/, 'it ends with "."'],
  [/(?:^|\/)\./, 'a path component starts with "."'],
  [/\.lock(?:\/|$)/, 'a path component ends with ".lock"'],
];

/** A failure of the local file system, as opposed to a damaged clone or an unreachable remote. */
export interface DiskProblem {
  /** ENOSPC, EDQUOT, EROFS, EACCES, EPERM, EIO, EFBIG or ENOTDIR. */
  errno: string;
  /** What git or the file system said (one line, redacted). */
  detail: string;
}

/** Errno codes of a local file-system failure that no re-clone can fix. */
const DISK_ERRNOS = new Set(["ENOSPC", "EDQUOT", "EROFS", "EACCES", "EPERM", "EIO", "EFBIG", "ENOTDIR"]);

/**
 * git's wording (C locale, `die_errno`'s "<what>: <strerror>") of those errors. "Permission
 * denied" counts only at the end of a line: ssh's "Permission denied (publickey)." is the remote
 * refusing a key.
 */
const GIT_DISK_ERRORS: [RegExp, string][] = [
  [/No space left on device/, "ENOSPC"],
  [/Disk quota exceeded/, "EDQUOT"],
  [/Read-only file system/, "EROFS"],
  [/: Permission denied\.?$|insufficient permission for adding an object/, "EACCES"],
  [/: Operation not permitted\.?$/, "EPERM"],
  [/Input\/output error/, "EIO"],
  [/File too large/, "EFBIG"],
];

/**
 * The local disk problem behind `error`, if it is one: a Node file-system error with one of the
 * codes above, or a failed git call whose stderr carries the matching strerror text.
 */
export function diskProblemOf(error: unknown): DiskProblem | undefined {
  const code = (error as { code?: unknown } | null | undefined)?.code;
  if (typeof code === "string" && DISK_ERRNOS.has(code)) return { errno: code, detail: messageOf(error) };
  if (!(error instanceof GitopsError) || error.code !== "E_EXEC") return undefined;
  const stderr = typeof error.details.stderr === "string" ? error.details.stderr : "";
  for (const line of stderr.split("\n")) {
    const hit = GIT_DISK_ERRORS.find(([pattern]) => pattern.test(line.trim()));
    if (hit) return { errno: hit[1], detail: line.trim() };
  }
  return undefined;
}

/**
 * E_GIT (backoff) when `error` is a local disk problem: `cannot write <what>: <hint> (<errno>:
 * <detail>)`, with `details.errno` and `details.path`. Undefined for any other error.
 */
export function diskError(
  error: unknown,
  what: string,
  details: { path: string } & Record<string, unknown>,
): GitopsError | undefined {
  const problem = diskProblemOf(error);
  if (problem === undefined) return undefined;
  const hint = DISK_HINTS[problem.errno] ?? "fix the file system";
  const message = `cannot write ${what}: ${hint} (${problem.errno}: ${problem.detail})`;
  return new GitopsError(redact(message), {
    code: "E_GIT",
    retry: "backoff",
    cause: error,
    details: { ...details, errno: problem.errno },
  });
}

/** What to do about each {@link DiskProblem}, for the message a person reads. */
const DISK_HINTS: Record<string, string> = {
  ENOSPC: "the file system is full: free space on it",
  EDQUOT: "the disk quota is used up: free space or raise the quota",
  EROFS: "the file system is read-only: remount it read-write or point local_path at a writable one",
  EACCES: "the agent's user may not write there: fix the owner or permissions",
  EPERM: "the agent's user may not write there: fix the owner, permissions or attributes",
  EIO: "the disk reports I/O errors: check it",
  EFBIG: "a file size limit was hit: raise it (ulimit -f) or the file system's limit",
  ENOTDIR: "a part of the path is a file, not a directory: check local_path",
};
