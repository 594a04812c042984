/**
 * Flags several CLI commands share: the configuration flags of `run` and `plan` (SPEC section 6),
 * the client flags of the commands that talk to a running agent, and count options (`-n 20`).
 */
import type { Command } from "cac";
import { DEFAULT_API_URL, apiUrlFor, type ClientOptions } from "../client.ts";
import { CONFIG_KEYS, type ConfigKey } from "../config.ts";
import { UsageError } from "./output.ts";

/** Placeholder and help text of each configuration key's flag (SPEC section 6): a new key in CONFIG_KEYS must get one. */
const CONFIG_FLAGS: Record<ConfigKey, [placeholder: string, help: string]> = {
  repo_url: ["url", "Git URL or local path of the gitops repository"],
  branch: ["branch", "Branch to track (default main)"],
  local_path: [
    "dir",
    "Clone, workspaces and state (default /var/lib/bc-gitops as root, else ~/.local/state/bc-gitops)",
  ],
  apps_dir: ["dir", "Directory of app specs inside the repository (default apps)"],
  reconcile_interval: ["duration", "Time between reconciles, ms or e.g. 60s (default 60s)"],
  runtime: ["runtime", "default, or a module path exporting a custom runtime"],
  listen: ["addr", "Control API address, or off (default 127.0.0.1:9477)"],
  token: ["token", "Bearer token for mutating API calls (at least 8 characters)"],
  webhook_secret: ["secret", "HMAC secret for POST /webhook (at least 8 characters)"],
  verify: ["json", `Only apply signed commits, e.g. '{"mode":"ssh","allowed_signers":"/etc/bc-gitops/signers"}'`],
  log_level: ["level", "debug, info, warn or error (default info)"],
  log_format: ["format", "pretty or json (default pretty)"],
  git_timeout: ["duration", "Deadline of each git command, ms or e.g. 30s (default 60s)"],
  reload_budget: ["count", "Hot reloads of an embedded app before status suggests worker isolation (default 100)"],
  age_key_file: ["file", "age identities (AGE-SECRET-KEY-1…) that decrypt apps' secrets.sops.* files"],
  host: ["name", "This host's name in the fleet (default the machine's host name)"],
  labels: ["key=value", "A label of this host, e.g. role=web; repeat for more (BC_GITOPS_LABELS=role=web,region=eu)"],
  reconcile_jitter: ["jitter", 'Random offset of each poll, a duration or a fraction of the interval (default "10%")'],
  notify: ["json", `Notification targets, e.g. '[{"url":"https://hooks.slack.com/services/…","format":"slack"}]'`],
  apply_concurrency: [
    "count",
    "Actions applied at once where dependencies allow (default: twice the core count, from 4 to 8; 1: one after another)",
  ],
};

/** The configuration flags shared by `run` and `plan` (SPEC section 6): one per key of CONFIG_KEYS, plus --config. */
export function configFlags<T extends Command>(command: T, except: readonly ConfigKey[] = []): T {
  command.option("--config <file>", "YAML configuration file (default ./bc-gitops.yaml when present)");
  for (const key of CONFIG_KEYS) {
    if (except.includes(key)) continue;
    const [placeholder, help] = CONFIG_FLAGS[key];
    // One label per flag, repeatable: `--label role=web --label region=eu`.
    if (key === "labels") command.option(`--label <${placeholder}>`, help, { type: [String] });
    else command.option(`--${key.replace(/_/g, "-")} <${placeholder}>`, help);
  }
  return command;
}

/** Options of the commands that talk to a running agent. */
export function clientFlags<T extends Command>(command: T): T {
  return command
    .option("--url <url>", `Control API of the agent (default ${DEFAULT_API_URL}, or BC_GITOPS_URL)`)
    .option("--token <token>", "Bearer token (default BC_GITOPS_TOKEN)") as T;
}

/** The agent a client command talks to: its flags, else `BC_GITOPS_URL` / `BC_GITOPS_LISTEN` and `BC_GITOPS_TOKEN`. */
export function client(options: { url?: string; token?: string }): ClientOptions {
  return {
    url: options.url ?? process.env.BC_GITOPS_URL ?? apiUrlFor(process.env.BC_GITOPS_LISTEN),
    token: options.token ?? process.env.BC_GITOPS_TOKEN,
  };
}

/** A count option (`-n 20`): a whole number, `fallback` when absent. */
export function count(value: unknown, fallback: number, flag: string): number {
  if (value === undefined) return fallback;
  const text = String(value);
  if (!/^\d{1,9}$/.test(text)) throw new UsageError(`${flag}: expected a number of lines, got ${JSON.stringify(text)}`);
  return Number(text);
}
