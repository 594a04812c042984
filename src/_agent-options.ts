/**
 * The options of `createAgent` (src/agent.ts): their type, the configuration they validate into,
 * the way back from a loaded configuration (`bc-gitops run`), and the `runtime` option resolved
 * into a runtime object.
 */
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { AgentConfig, CONFIG_KEYS } from "./config.ts";
import { GitopsError } from "./errors.ts";
import type { Logger } from "./logger.ts";
import type { NotifyTargetInput } from "./notify.ts";
import type { Runtime, RuntimeContext } from "./runtime.ts";
import type { Telemetry } from "./telemetry.ts";

/** A runtime given to `createAgent`: the object, a factory, `"default"`, or a module path whose default export is one of those. */
export type RuntimeOption = "default" | string | Runtime | ((context: RuntimeContext) => Runtime | Promise<Runtime>);

/** Options of `createAgent`: the configuration keys of SPEC section 6 in camelCase, plus injected collaborators. */
export interface AgentOptions {
  repoUrl: string;
  branch?: string;
  localPath?: string;
  appsDir?: string;
  /** Milliseconds or a duration string (`"60s"`). */
  reconcileInterval?: number | string;
  runtime?: RuntimeOption;
  /** Control API address, or `"off"`. */
  listen?: string;
  token?: string;
  webhookSecret?: string;
  verify?: AgentConfig["verify"];
  /** Deadline of every git call (ms or duration string). */
  gitTimeout?: number | string;
  /** Hot reloads of an embedded app before status warns to use `worker` isolation. */
  reloadBudget?: number;
  /** Actions a tick applies at once where the dependency order allows (default: twice the core count, from 4 to 8; 1: one after another). */
  applyConcurrency?: number;
  /** age identities file for apps' SOPS secrets files (also `SOPS_AGE_KEY_FILE`, `SOPS_AGE_KEY`). */
  ageKeyFile?: string;
  /** This host's name in the fleet (default: the machine's host name, lower-cased). */
  host?: string;
  /** This host's labels (`{ role: "web" }`); `host`, `os`, `arch` and `runtime` are added. */
  labels?: Record<string, string>;
  /** Random offset of each timed poll: a duration, or a fraction of the interval (`"10%"`, the default). */
  reconcileJitter?: number | string;
  /** Delay the first poll of an agent restoring apps by a random part of the jitter (`run` does, when not in a terminal). */
  jitterFirstTick?: boolean;
  /** Random numbers in [0, 1) for the jitter (tests). */
  random?: () => number;
  /** Where to send notifications (config `notify`). */
  notify?: readonly NotifyTargetInput[];
  /** Where the library logs (default: nowhere). */
  logger?: Logger;
  /** The clock (tests). */
  now?: () => number;
}

/** The configuration keys that are agent options (the log settings belong to the CLI's logger). */
const OPTION_KEYS = CONFIG_KEYS.filter((key) => key !== "log_level" && key !== "log_format");

/** `repo_url` -> `repoUrl`. */
function optionName(key: string): string {
  return key.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());
}

/** The `createAgent` options of a loaded configuration (`bc-gitops run`), each key in camelCase. */
export function agentOptionsOf(config: AgentConfig): AgentOptions {
  const out: Record<string, unknown> = {};
  for (const key of OPTION_KEYS) if (config[key] !== undefined) out[optionName(key)] = config[key];
  return out as unknown as AgentOptions;
}

/** The configuration of `createAgent`'s options, `local_path` made absolute; throws `GitopsError` E_CONFIG at the first bad option. */
export function agentConfigOf(options: AgentOptions): AgentConfig {
  const given = options as unknown as Record<string, unknown>;
  const raw: Record<string, unknown> = {};
  for (const key of OPTION_KEYS) if (given[optionName(key)] !== undefined) raw[key] = given[optionName(key)];
  if (typeof options.runtime === "function") raw.runtime = "default";
  const parsed = AgentConfig.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new GitopsError(`invalid agent option ${issue.path.join(".")}: ${issue.message}`, {
      code: "E_CONFIG",
      retry: "stalled",
    });
  }
  const config = parsed.data;
  config.local_path = resolve(config.local_path);
  return config;
}

/** Resolves the `runtime` option into a runtime object. */
export async function loadRuntime(
  option: RuntimeOption,
  context: RuntimeContext & { logger: Logger; emit: Telemetry["emit"]; reloadBudget: number },
): Promise<Runtime> {
  if (typeof option === "function") return option(context);
  if (typeof option === "object") return option;
  if (option === "default") {
    const { createDefaultRuntime } = await import("./runtimes/default.ts");
    return createDefaultRuntime(context);
  }
  let module: { default?: unknown };
  try {
    module = (await import(pathToFileURL(resolve(option)).href)) as { default?: unknown };
  } catch (error) {
    throw new GitopsError(`cannot load the runtime module ${option}: ${(error as Error).message}`, {
      code: "E_CONFIG",
      retry: "stalled",
      cause: error,
    });
  }
  const exported = module.default;
  const runtime =
    typeof exported === "function"
      ? await (exported as (c: RuntimeContext) => Runtime | Promise<Runtime>)(context)
      : exported;
  const missing = ["deploy", "remove", "upgrade", "reconfigure", "getCurrentState"].filter(
    (m) => typeof (runtime as Record<string, unknown> | undefined)?.[m] !== "function",
  );
  if (missing.length) {
    throw new GitopsError(
      `the runtime module ${option} must export (default) a runtime object or a function returning one; missing: ${missing.join(", ")}`,
      {
        code: "E_CONFIG",
        retry: "stalled",
      },
    );
  }
  return runtime as Runtime;
}
