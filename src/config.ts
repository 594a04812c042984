/**
 * Agent configuration (SPEC section 6): a YAML file, `BC_GITOPS_<KEY>` environment variables and
 * command-line flags, merged as flags > env > file > defaults and validated with errors that name
 * where the bad value came from.
 */
import { readFile } from "node:fs/promises";
import { availableParallelism, cpus, homedir } from "node:os";
import { join, resolve } from "node:path";
import { z } from "zod";
import { parseDuration } from "./duration.ts";
import { GitopsError } from "./errors.ts";
import { isLocalPath } from "./_git.ts";
import { defaultHostName, hostNameProblem, labelsProblem, parseLabelList } from "./fleet/host.ts";
import { DEFAULT_JITTER, jitterMs, parseJitter } from "./fleet/jitter.ts";
import { NotifyTarget } from "./notify.ts";
import type { Runtime } from "./runtime.ts";
import { suggest } from "./suggest.ts";

/** Every configuration key, as written in the file (env: `BC_GITOPS_` + upper case; flags: `--` + dashes). */
export const CONFIG_KEYS = [
  "repo_url",
  "branch",
  "local_path",
  "apps_dir",
  "reconcile_interval",
  "runtime",
  "listen",
  "token",
  "webhook_secret",
  "verify",
  "log_level",
  "log_format",
  "git_timeout",
  "reload_budget",
  "age_key_file",
  "host",
  "labels",
  "reconcile_jitter",
  "notify",
  "apply_concurrency",
] as const;
/** A configuration key. */
export type ConfigKey = (typeof CONFIG_KEYS)[number];

const duration = () =>
  z.union([z.number(), z.string()]).transform((value, ctx) => {
    const ms = parseDuration(value);
    if (ms === undefined || ms <= 0) {
      ctx.addIssue({
        code: "custom",
        message: `expected a duration like 60000 or "60s", got ${JSON.stringify(value)}`,
      });
      return z.NEVER;
    }
    return ms;
  });

const noDash = (what: string) =>
  z
    .string()
    .min(1, { error: `expected ${what}` })
    .refine((s) => !s.startsWith("-"), { error: `${what} must not start with "-"` });

const actionCount = (iss: { input?: unknown }) =>
  `expected how many actions to apply at once, a whole number of at least 1 (1: one after another), got ${typeof iss.input === "string" ? JSON.stringify(iss.input) : String(iss.input)}`;

const SECRET_LENGTH = "must be at least 8 characters; use a long random string, e.g. from `openssl rand -hex 32`";

/** The validated agent configuration. */
export const AgentConfig = z
  .strictObject({
    repo_url: noDash("a git URL or path of the gitops repository"),
    branch: noDash("a branch name").default("main"),
    local_path: z.string().min(1).default(defaultLocalPath),
    apps_dir: z
      .string()
      .refine((p) => !p.startsWith("/") && !p.split(/[\\/]/).includes(".."), {
        error: "apps_dir must be a relative path inside the repository",
      })
      .default("apps"),
    reconcile_interval: duration().default(60_000),
    runtime: z.union([z.string(), z.custom<Runtime>((v) => typeof v === "object" && v !== null)]).default("default"),
    listen: z.string().default("127.0.0.1:9477"),
    token: z.string().min(8, { error: SECRET_LENGTH }).optional(),
    webhook_secret: z.string().min(8, { error: SECRET_LENGTH }).optional(),
    verify: z
      .strictObject({
        mode: z.enum(["ssh", "gpg"]),
        allowed_signers: z.string().optional(),
        keyring: z.string().optional(),
      })
      .optional(),
    log_level: z.enum(["debug", "info", "warn", "error"]).default("info"),
    log_format: z.enum(["pretty", "json"]).default("pretty"),
    git_timeout: duration().default(60_000),
    reload_budget: z.number().int().positive().default(100),
    /** age identities for SOPS secrets files (also `SOPS_AGE_KEY_FILE`, `SOPS_AGE_KEY`). */
    age_key_file: z.string().min(1).optional(),
    host: z
      .string()
      .refine((h) => hostNameProblem(h) === undefined, { error: (iss) => hostNameProblem(String(iss.input))! })
      .transform((h) => h.toLowerCase())
      .default(defaultHostName),
    labels: z
      .record(
        z.string(),
        z.union([z.string(), z.number(), z.boolean()], { error: "expected a label value (text)" }).transform(String),
        { error: "expected a mapping of label: value, like { role: web }" },
      )
      .refine((labels) => labelsProblem(labels) === undefined, {
        error: (iss) => labelsProblem(iss.input as Record<string, string>)!,
      })
      .default({}),
    reconcile_jitter: z
      .union([z.number(), z.string()])
      .refine((v) => parseJitter(v) !== undefined, {
        error: (iss) =>
          `expected a duration like "5s" or a fraction of the interval like "10%", got ${JSON.stringify(iss.input)}`,
      })
      .default(DEFAULT_JITTER),
    /** Where to send notifications (`notify.ts`). */
    notify: z.array(NotifyTarget).default([]),
    apply_concurrency: z
      .number({ error: actionCount })
      .int({ error: actionCount })
      .min(1, { error: actionCount })
      .default(defaultApplyConcurrency),
  })
  .superRefine((config, ctx) => {
    if (jitterMs(config.reconcile_jitter, config.reconcile_interval) > config.reconcile_interval)
      ctx.addIssue({
        code: "custom",
        path: ["reconcile_jitter"],
        message: `must not exceed reconcile_interval (${config.reconcile_interval} ms)`,
      });
  });
/** A validated agent configuration (snake_case keys, durations in ms). */
export type AgentConfig = z.output<typeof AgentConfig>;

const DURATION_KEYS: ReadonlySet<string> = new Set(["reconcile_interval", "git_timeout"]);
/** Keys whose value is structured: JSON in an environment variable or a flag. */
const JSON_KEYS: ReadonlySet<string> = new Set(["verify", "notify"]);
/** Keys whose environment variable or flag (always text) is read as a number. */
const NUMBER_KEYS: ReadonlySet<string> = new Set(["reload_budget", "apply_concurrency"]);

/**
 * The default bound on actions applied at once: twice the core count, at least 4 and at most 8.
 * Most of a deploy is waiting (an app process starting on another core, the port it opens, its
 * first health check, a download or an install), so more actions than cores overlap: deploying 50
 * process apps on 2 cores took 48-65% of the sequential time with 4 at once, 57-84% with 2
 * (docs/benchmarks.md). Past 8 a burst of starts competes with the apps already running for CPU
 * and memory for little gain.
 */
export function defaultApplyConcurrency(): number {
  const cores = typeof availableParallelism === "function" ? availableParallelism() : cpus().length;
  return Math.min(8, Math.max(4, 2 * (cores || 1)));
}

/** `/var/lib/bc-gitops` as root, else `$XDG_STATE_HOME/bc-gitops` or `~/.local/state/bc-gitops`. */
export function defaultLocalPath(): string {
  if (process.getuid?.() === 0) return "/var/lib/bc-gitops";
  return join(process.env.XDG_STATE_HOME || join(homedir(), ".local", "state"), "bc-gitops");
}

/** Where each layer of configuration comes from. */
export interface ConfigSources {
  /** Path of the YAML file (`--config`); when absent, `./bc-gitops.yaml` is read if it exists. */
  file?: string;
  /** Environment (default `process.env`); only `BC_GITOPS_*` keys are read. */
  env?: Record<string, string | undefined>;
  /** Flags, camelCase as cac gives them (`repoUrl`) or snake_case. Unknown flags are ignored. */
  flags?: Record<string, unknown>;
}

/** Reads, merges and validates the configuration; throws a `GitopsError` (E_CONFIG) naming the source, key and fix. */
export async function loadConfig(sources: ConfigSources = {}): Promise<AgentConfig> {
  const origin = new Map<string, string>();
  const merged: Record<string, unknown> = {};
  const fileLayer = await readConfigFile(sources.file);
  for (const [key, value] of Object.entries(fileLayer.values)) {
    if (!(CONFIG_KEYS as readonly string[]).includes(key)) {
      const hint = suggest(key, CONFIG_KEYS);
      throw configError(`${fileLayer.path}: unknown key "${key}"${hint ? ` (did you mean "${hint}"?)` : ""}`);
    }
    merged[key] = value;
    origin.set(key, fileLayer.path);
  }
  const env = sources.env ?? process.env;
  for (const key of CONFIG_KEYS) {
    const name = `BC_GITOPS_${key.toUpperCase()}`;
    const value = env[name];
    if (value === undefined || value === "") continue;
    merged[key] = NUMBER_KEYS.has(key)
      ? numberOf(value)
      : JSON_KEYS.has(key)
        ? parseJson(name, value)
        : key === "labels"
          ? mergeLabels(merged.labels, labelList(name, value))
          : value;
    origin.set(key, name);
  }
  for (const key of CONFIG_KEYS) {
    const camel = key.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());
    // Labels are given one at a time: `--label role=web --label region=eu` (cac: a list when repeated).
    const value = key === "labels" ? sources.flags?.label : (sources.flags?.[camel] ?? sources.flags?.[key]);
    if (value === undefined) continue;
    const flag = key === "labels" ? "--label" : `--${key.replace(/_/g, "-")}`;
    merged[key] = NUMBER_KEYS.has(key)
      ? numberOf(value)
      : JSON_KEYS.has(key) && typeof value === "string"
        ? parseJson(flag, value)
        : key === "labels"
          ? mergeLabels(merged.labels, labelList(flag, (Array.isArray(value) ? value : [value]).map(String)))
          : typeof value === "object" || DURATION_KEYS.has(key)
            ? value
            : String(value);
    origin.set(key, flag);
  }
  if (merged.repo_url === undefined) {
    throw configError(
      "repo_url is required: pass --repo-url URL, set BC_GITOPS_REPO_URL, or add repo_url to bc-gitops.yaml",
    );
  }
  const parsed = AgentConfig.safeParse(merged);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const key = String(issue.path[0] ?? "");
    const where = origin.get(key);
    // A flag or variable already names the key; a file (or no source) needs it spelt out.
    const named = where !== undefined && where !== fileLayer.path && issue.path.length === 1;
    throw configError(`${where ?? "configuration"}: ${named ? "" : `${issue.path.join(".")}: `}${issue.message}`);
  }
  const config = parsed.data;
  // A local repository path is resolved once, so a later chdir cannot change what is tracked.
  if (isLocalPath(config.repo_url)) config.repo_url = resolve(config.repo_url);
  config.local_path = resolve(config.local_path);
  return config;
}

async function readConfigFile(file: string | undefined): Promise<{ path: string; values: Record<string, unknown> }> {
  const path = file ?? "bc-gitops.yaml";
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (error) {
    if (file === undefined && (error as NodeJS.ErrnoException).code === "ENOENT") return { path, values: {} };
    throw configError(`cannot read config file ${path}: ${(error as Error).message}`);
  }
  const { parse } = await import("yaml");
  let values: unknown;
  try {
    values = parse(text);
  } catch (error) {
    throw configError(`${path}: invalid YAML: ${(error as Error).message.split("\n")[0]}`);
  }
  if (values === null || values === undefined) return { path, values: {} };
  if (typeof values !== "object" || Array.isArray(values))
    throw configError(`${path}: expected a mapping of settings (repo_url: …)`);
  return { path, values: values as Record<string, unknown> };
}

/** `key=value` items of `origin` (a variable or a flag) as a map; a config error naming `origin` when one is malformed. */
function labelList(origin: string, value: string | string[]): Record<string, string> {
  try {
    return parseLabelList(value);
  } catch (error) {
    throw configError(`${origin}: ${(error as Error).message}, like role=web,region=eu`);
  }
}

/** Labels from a higher layer are added to (and win over) those of the layers below. */
function mergeLabels(below: unknown, above: Record<string, string>): Record<string, unknown> {
  return { ...(typeof below === "object" && below !== null ? (below as Record<string, unknown>) : {}), ...above };
}

/** A number written as text (a variable, a flag); other text stays text, so the error can quote it. */
function numberOf(value: unknown): unknown {
  const n = typeof value === "string" && value.trim() !== "" ? Number(value) : value;
  return typeof n === "number" && !Number.isNaN(n) ? n : value;
}

function parseJson(origin: string, value: string): unknown {
  try {
    return JSON.parse(value);
  } catch {
    throw configError(
      origin.toLowerCase().endsWith("notify")
        ? `${origin}: expected JSON, e.g. [{"url":"https://hooks.slack.com/services/…","format":"slack"}]`
        : `${origin}: expected JSON, e.g. {"mode":"ssh","allowed_signers":"/etc/bc-gitops/signers"}`,
    );
  }
}

function configError(message: string): GitopsError {
  return new GitopsError(message, { code: "E_CONFIG", retry: "stalled" });
}
