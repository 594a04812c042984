#!/usr/bin/env node
/**
 * The bc-gitops command line. The only module that prints for humans and calls `process.exit`;
 * everything it does is a call into the library.
 */
import { basename, join, resolve } from "node:path";
import { cac } from "cac";
import { colors } from "consola/utils";
import { runtimeName, runtimeVersion } from "./_platform.ts";
import { agentOptionsOf, createAgent } from "./agent.ts";
import { CONFIG_KEYS, defaultLocalPath, loadConfig, type ConfigKey } from "./config.ts";
import { createConsoleLogger } from "./console-logger.ts";
import { DEFAULT_API_URL, apiRequest, apiUrlFor, followEvents, followStream, type ClientOptions } from "./client.ts";
import type { LogTail } from "./app-logs.ts";
import type { StreamEvent } from "./event-stream.ts";
import { formatIssue, loadApps, resolveAppsDir, type SpecIssue } from "./loader.ts";
import { fleetStatusCommand, type FleetStatusFlags } from "./fleet/status.ts";
import { formatLabels, identityOf } from "./fleet/host.ts";
import { runnableApps, type HostedApp } from "./fleet/view.ts";
import { preview } from "./preview.ts";
import type { TickResult } from "./reconciler.ts";
import { eventLine, placementReport, planReport, statusReport, tickReport } from "./report.ts";
import type { AppState, HotReloadResult } from "./runtime.ts";
import { runDemo } from "./demo.ts";
import { scaffold } from "./scaffold.ts";
import { checkSecretsFiles, decryptFile, encryptFile } from "./secrets/commands.ts";
import type { AgentStatus } from "./status.ts";
import { appSpecJsonSchema } from "./spec.ts";
import { VERSION } from "./version.ts";

/** An error the user can act on: printed as one line, no stack trace. */
class UsageError extends Error {}

const cli = cac("bc-gitops");
cli.option("--debug", "Print stack traces on errors");

cli
  .command("validate [path]", "Lint a gitops repository (or its apps directory) offline; exit 1 on any error")
  .option("--strict", "Treat warnings as errors")
  .option("--json", "Print { apps, errors, warnings } as JSON")
  .option("--apps-dir <dir>", "Apps directory inside the repository (default apps)")
  .option(
    "--age-key-file <file>",
    "age identities to check secrets files' MACs with (also SOPS_AGE_KEY_FILE, SOPS_AGE_KEY)",
  )
  .option("--host <name>", "Show what this host would run: placement, overrides and rollout waves applied")
  .option("--label <key=value>", "A label of that host (repeatable; os, arch and runtime default to this machine's)", {
    type: [String],
  })
  .action(async (path: string | undefined, options: ValidateOptions) => {
    const target = path ?? ".";
    const where = await resolveAppsDir(target, options.appsDir ?? "apps");
    if (!where)
      throw new UsageError(`cannot read ${target}: no such directory; pass a gitops repository or its apps directory`);
    const result = await loadApps(where.appsDir, { root: where.root, strict: options.strict });
    // Secrets files: structure was checked by loading; the MAC too when this host has a key (values never shown).
    const files = result.apps.flatMap(({ spec }) => (spec.secrets?.file ? [spec.secrets.file] : []));
    const secrets = await checkSecretsFiles(files, where.root, { ageKeyFile: options.ageKeyFile });
    result.errors.push(...secrets.errors);
    result.warnings.push(...secrets.warnings);
    const empty = result.apps.length + result.errors.length + result.warnings.length === 0;
    // `validate repo/apps` may name the apps directory itself; a folder that is neither it nor holds
    // it is an error, as for `run`, not "0 valid apps".
    if (
      empty &&
      where.appsDir !== join(target, options.appsDir ?? "apps") &&
      basename(resolve(target)) !== basename(options.appsDir ?? "apps")
    ) {
      throw new UsageError(
        `no apps directory found: ${join(target, options.appsDir ?? "apps")} does not exist and ${target} holds no app specs (<name>/app.yaml); pass the gitops repository or its apps directory (--apps-dir to name it)`,
      );
    }
    // With --host: what that host runs (placement, overrides), planned exactly as its agent would.
    const identity =
      options.host !== undefined || options.label ? identityOf(options.host, options.label ?? []) : undefined;
    const { apps, errors, placement } = runnableApps(result, identity);
    if (options.json) {
      const fleet = placement ? { host: placement.identity.host, labels: placement.identity.labels } : {};
      const notPlaced = placement ? { not_placed: placement.notPlaced } : {};
      print(JSON.stringify({ ...fleet, apps, ...notPlaced, errors, warnings: result.warnings }, null, 2));
    } else {
      if (placement) print(placementReport(placement.identity, apps as HostedApp[], placement.notPlaced));
      for (const issue of errors) print(`${colors.red("error")}   ${formatIssue(issue)}`);
      for (const issue of result.warnings) print(`${colors.yellow("warning")} ${formatIssue(issue)}`);
      print(summary(apps.length, errors, result.warnings));
    }
    return errors.length > 0 ? 1 : 0;
  });

interface ValidateOptions {
  strict?: boolean;
  json?: boolean;
  appsDir?: string;
  ageKeyFile?: string;
  host?: string;
  label?: string[];
}

cli
  .command(
    "secrets <action> <file>",
    "SOPS secrets files without the sops tool: `secrets encrypt --age age1… FILE` (on stdout), `secrets decrypt FILE`",
  )
  .option("--age <recipient>", "encrypt: an age recipient (age1…); repeat it or comma-separate several")
  .option("--encrypted-regex <regex>", "encrypt: only values under keys matching it")
  .option("--unencrypted-regex <regex>", "encrypt: not the values under keys matching it")
  .option("--encrypted-suffix <suffix>", "encrypt: only values under keys ending with it")
  .option("--unencrypted-suffix <suffix>", "encrypt: not the values under keys ending with it (default _unencrypted)")
  .option("--mac-only-encrypted", "encrypt: the MAC covers encrypted values only")
  .option("--input-type <type>", "yaml, json or dotenv (default: from the file name)")
  .option("--age-key-file <file>", "decrypt: age identities (also SOPS_AGE_KEY_FILE, SOPS_AGE_KEY)")
  .option("--force", "decrypt: print even when stdout is not a terminal")
  .action(async (action: string, file: string, options: Record<string, unknown>) => {
    const text = (key: string) => (options[key] === undefined ? undefined : String(options[key]));
    if (action === "encrypt") {
      const age = options.age === undefined ? [] : [options.age].flat().map(String);
      process.stdout.write(
        await encryptFile(file, {
          age,
          inputType: text("inputType"),
          encrypted_regex: text("encryptedRegex"),
          unencrypted_regex: text("unencryptedRegex"),
          encrypted_suffix: text("encryptedSuffix"),
          unencrypted_suffix: text("unencryptedSuffix"),
          macOnlyEncrypted: options.macOnlyEncrypted === true,
        }),
      );
      return 0;
    }
    if (action === "decrypt") {
      // Plaintext secrets are for a person at a terminal, not for a pipe or a log file by accident.
      if (!process.stdout.isTTY && options.force !== true)
        throw new UsageError(
          "refusing to print decrypted secrets to something that is not a terminal (a pipe, a file, a CI log); pass --force if that is really what you want",
        );
      process.stdout.write(await decryptFile(file, { ageKeyFile: text("ageKeyFile"), inputType: text("inputType") }));
      return 0;
    }
    throw new UsageError(
      `unknown secrets action "${action}": use secrets encrypt --age age1… FILE, or secrets decrypt FILE`,
    );
  });

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
};

/** The configuration flags shared by `run` and `plan` (SPEC section 6): one per key of CONFIG_KEYS, plus --config. */
function configFlags<T extends ReturnType<typeof cli.command>>(command: T, except: readonly ConfigKey[] = []): T {
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

configFlags(cli.command("run", "Run the agent in the foreground")).action(async (options: Record<string, unknown>) => {
  const sources = { file: options.config as string | undefined, flags: options };
  const config = await loadConfig(sources);
  const logger = createConsoleLogger({ level: config.log_level, format: config.log_format });
  // Started from a terminal: someone is watching, so a restarted agent polls at once.
  const agent = createAgent({ ...agentOptionsOf(config), logger, jitterFirstTick: !process.stdin.isTTY });
  logger.info(
    `bc-gitops ${VERSION} tracking ${config.branch} of ${config.repo_url} every ${config.reconcile_interval / 1000}s`,
  );
  // Keep the process alive until a signal stops it, whatever else holds the event loop.
  const keepAlive = setInterval(() => {}, 1 << 30);
  const stopped = new Promise<number>((resolveStop) => {
    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) return;
      stopping = true;
      logger.info(`${signal}: stopping apps and the agent`);
      agent.stop().then(
        () => resolveStop(0),
        (error: unknown) => {
          logger.error(`stop failed: ${(error as Error).message}`);
          resolveStop(1);
        },
      );
    };
    process.on("SIGTERM", () => stop("SIGTERM"));
    process.on("SIGINT", () => stop("SIGINT"));
  });
  process.on("SIGHUP", () => {
    // The labels are read again (a label change moves apps); the rest of the configuration needs a restart.
    void loadConfig(sources)
      .then(({ labels }) => {
        if (JSON.stringify(labels) !== JSON.stringify(config.labels)) agent.setLabels((config.labels = labels));
      })
      .catch((error: unknown) => logger.error(`SIGHUP: keeping the labels: ${(error as Error).message}`))
      .then(() => {
        logger.info("SIGHUP: reconciling now");
        return agent.reconcile().catch(() => {});
      });
  });
  try {
    const first = await agent.start();
    logger.info(
      `first reconcile: ${first.status} at ${first.commit?.slice(0, 12) ?? "no commit"} in ${first.duration_ms} ms`,
    );
  } catch (error) {
    clearInterval(keepAlive);
    await agent.stop().catch(() => {});
    throw error;
  }
  const code = await stopped;
  clearInterval(keepAlive);
  return code;
});

/** Options of the commands that talk to a running agent. */
function clientFlags<T extends ReturnType<typeof cli.command>>(command: T): T {
  return command
    .option("--url <url>", `Control API of the agent (default ${DEFAULT_API_URL}, or BC_GITOPS_URL)`)
    .option("--token <token>", "Bearer token (default BC_GITOPS_TOKEN)") as T;
}

function client(options: { url?: string; token?: string }): ClientOptions {
  return {
    url: options.url ?? process.env.BC_GITOPS_URL ?? apiUrlFor(process.env.BC_GITOPS_LISTEN),
    token: options.token ?? process.env.BC_GITOPS_TOKEN,
  };
}

clientFlags(cli.command("status [app]", "Show the agent's status and its apps (a table, or --json)"))
  .option("--json", "Print JSON (the status, or one app's state)")
  .action(async (app: string | undefined, options: { url?: string; token?: string; json?: boolean }) => {
    const api = client(options);
    if (app) {
      const state = await apiRequest<AppState>(api, "GET", `/apps/${encodeURIComponent(app)}`);
      print(
        options.json
          ? JSON.stringify(state, null, 2)
          : statusReport(await apiRequest<AgentStatus>(api, "GET", "/status"), [state]),
      );
      return 0;
    }
    const [status, { apps }] = await Promise.all([
      apiRequest<AgentStatus>(api, "GET", "/status"),
      apiRequest<{ apps: AppState[] }>(api, "GET", "/apps"),
    ]);
    print(options.json ? JSON.stringify({ ...status, apps }, null, 2) : statusReport(status, apps));
    return status.status === "error" ? 1 : 0;
  });

clientFlags(cli.command("reconcile", "Reconcile now, wait for the result and print it"))
  .option("--json", "Print the result as JSON")
  .action(async (options: { url?: string; token?: string; json?: boolean }) => {
    const result = await apiRequest<TickResult>(client(options), "POST", "/reconcile");
    print(options.json ? JSON.stringify(result, null, 2) : tickReport(result));
    return result.status === "error" || result.actions.some((a) => a.outcome === "failed") ? 1 : 0;
  });

clientFlags(cli.command("reload <app>", "Hot-reload one app now (same version, changed code)"))
  .option("--json", "Print the result as JSON")
  .action(async (app: string, options: { url?: string; token?: string; json?: boolean }) => {
    const result = await apiRequest<HotReloadResult>(
      client(options),
      "POST",
      `/apps/${encodeURIComponent(app)}/reload`,
    );
    if (options.json) print(JSON.stringify(result, null, 2));
    else
      print(
        result.modules.length
          ? `reloaded ${result.app} at ${result.revision.slice(0, 12)}: ${result.modules.join(", ")}`
          : `${result.app}: nothing changed, nothing reloaded`,
      );
    return 0;
  });

clientFlags(cli.command("events", "Follow the agent's live event stream (readable lines, or --json)"))
  .option("--json", "Print each event as one JSON line")
  .option("-n, --lines <count>", "Past events to print first (default 10)")
  .action(async (options: { url?: string; token?: string; json?: boolean; lines?: unknown }) => {
    await followEvents(client(options), {
      backlog: count(options.lines, 10, "--lines"),
      onEvent: (data) => print(options.json ? data : eventLine(JSON.parse(data) as StreamEvent)),
      onGap: (missed) =>
        process.stderr.write(
          colors.dim(
            missed === null
              ? "(the agent restarted: showing the events it kept since)\n"
              : `(${missed} event(s) missed: older than the agent's history)\n`,
          ),
        ),
      onReconnect: () => process.stderr.write(colors.dim("(the event stream ended; reconnecting…)\n")),
    });
    return 0;
  });

clientFlags(cli.command("logs <app>", "Print the last lines of an app's log; -f keeps printing new ones"))
  .option("-n, --lines <count>", "Lines to print (default 100)")
  .option("-f, --follow", "Keep printing lines as the app writes them")
  .action(async (app: string, options: { url?: string; token?: string; lines?: unknown; follow?: boolean }) => {
    const api = client(options);
    const lines = count(options.lines, 100, "--lines");
    const path = `/apps/${encodeURIComponent(app)}/logs?lines=${lines}`;
    if (!options.follow) {
      const tail = await apiRequest<LogTail>(api, "GET", path);
      for (const line of tail.lines) print(line);
      return 0;
    }
    await followStream(api, `${path}&follow=1`, (message) =>
      print((JSON.parse(message.data) as { line: string }).line),
    );
    process.stderr.write(colors.dim("(the agent ended the log stream)\n"));
    return 0;
  });

// --token once: the client's (the agent's API token, also read from the configuration).
configFlags(
  clientFlags(cli.command("plan", "Show what the next reconcile would do: exit 0 nothing, 2 changes, 1 error")),
  ["token"],
)
  .option("--json", "Print { commit, actions, errors } as JSON")
  .action(async (options: Record<string, unknown>) => {
    const config = await loadConfig({
      file: options.config as string | undefined,
      flags: { ...options, token: undefined },
    });
    const api = client({
      url: (options.url as string | undefined) ?? apiUrlFor(config.listen),
      token: (options.token as string | undefined) ?? config.token,
    });
    // An agent named by --url (or BC_GITOPS_URL) and no state.json named: the agent may run on another
    // host, so what it has deployed comes from its API rather than from this host's default path.
    const urlGiven = options.url !== undefined || Boolean(process.env.BC_GITOPS_URL);
    const localGiven =
      options.localPath !== undefined ||
      Boolean(process.env.BC_GITOPS_LOCAL_PATH) ||
      config.local_path !== resolve(defaultLocalPath());
    const deployed = urlGiven && !localGiven ? "agent" : "local";
    const result = await preview(config, api, { deployed });
    if (options.json) {
      const actions = result.actions.map(({ type, app, ...rest }) => ({
        type,
        app,
        ...("reason" in rest ? { reason: rest.reason } : {}),
        ...("secrets" in rest && rest.secrets ? { secrets_changed: rest.secrets } : {}),
      }));
      print(
        JSON.stringify(
          {
            commit: result.commit,
            host: result.identity.host,
            labels: result.identity.labels,
            live: result.live,
            deployed: result.deployed,
            actions,
            waiting: result.waiting,
            not_placed: result.notPlaced,
            errors: [...result.errors, ...result.specErrors],
          },
          null,
          2,
        ),
      );
    } else {
      print(colors.dim(`plan for host ${result.identity.host} (${formatLabels(result.identity.labels)})`));
      for (const issue of result.specErrors) print(`${colors.red("error")}   ${formatIssue(issue)}`);
      print(planReport(result.actions, result.errors));
      for (const { app, reason } of result.waiting) print(`${colors.yellow("…")} ${app}: ${reason}`);
      for (const { name, reason } of result.notPlaced) print(colors.dim(`  ${name}: not placed: ${reason}`));
      if (!result.live)
        print(
          colors.dim(
            `(no agent answered at ${api.url}: compared with ${config.local_path}/state.json, assuming deployed apps run)`,
          ),
        );
      if (result.deployed === "agent")
        print(
          colors.dim(
            `(compared with what the agent at ${api.url} has deployed; it masks secret-looking env values, so a change to one alone shows only with --local-path on its host)`,
          ),
        );
    }
    if (result.errors.length > 0 || result.specErrors.length > 0) return 1;
    return result.actions.length > 0 ? 2 : 0;
  });

clientFlags(
  cli.command(
    "fleet <command> [...urls]",
    "fleet status URL…: every agent's apps in one table (exit 0 synced, 2 not, 1 unreachable)",
  ),
)
  .option("--inventory <file>", "A file of agent URLs, one per line")
  .option("--timeout <duration>", "Deadline of each agent's answer (default 5s)")
  .option("--json", "Print { hosts: [{ url, reachable, host, labels, status, apps }] } as JSON")
  .action(async (command: string, urls: string[], options: FleetStatusFlags) => {
    if (command !== "status")
      throw new UsageError(`unknown fleet command "${command}"; use: bc-gitops fleet status URL…`);
    const token = options.token ?? process.env.BC_GITOPS_TOKEN;
    const { report, code } = await fleetStatusCommand(urls, { ...options, token });
    print(report);
    return code;
  });

cli
  .command("init [dir]", "Create a gitops repository with one example app that runs")
  .action(async (dir: string | undefined) => {
    const target = dir ?? "gitops";
    const { commit, files } = await scaffold(target);
    print(`created ${target} (${files.length} files, commit ${commit.slice(0, 12)}):`);
    for (const file of files) print(`  ${file}`);
    print(`\nrun it:  bc-gitops run --repo-url ${target}\nthen:    curl http://127.0.0.1:8080/?name=you`);
    return 0;
  });

cli
  .command("demo", "A self-contained tour on a throwaway local gitops repository (no network)")
  .option("--keep", "Keep the temp directory afterwards")
  .option("--verbose", "Show the agent's log")
  .action(async (options: { keep?: boolean; verbose?: boolean }) => {
    print(colors.bold("bc-gitops demo: a throwaway gitops repository and a real agent, nothing leaves this machine\n"));
    const started = performance.now();
    const { dir, steps } = await runDemo({
      keep: options.keep,
      logger: options.verbose ? createConsoleLogger({ level: "info", format: "pretty" }) : undefined,
      onStep(step) {
        if (!step.result) {
          print(`${colors.cyan(`${step.index}/${step.total} ${step.title}`)}  ${colors.dim(step.change)}`);
          print(colors.dim("    … committing and reconciling"));
          return;
        }
        for (const action of step.result.actions) {
          const mark = action.outcome === "ok" ? colors.green("✔") : colors.red("✖");
          print(
            `    ${mark} ${action.type} ${action.app}${action.error ? `: ${action.error}` : ""} ${colors.dim(`(${action.duration_ms ?? 0} ms)`)}`,
          );
        }
        print(`    app answers: ${step.answer}`);
        print(
          colors.dim(
            `    commit ${step.commit?.slice(0, 12)} applied and answered in ${step.ms} ms; agent ${step.result.status}\n`,
          ),
        );
      },
    });
    const failed = steps.some((s) => s.result?.actions.some((a) => a.outcome !== "ok"));
    print(
      `${failed ? colors.red("✖ the demo hit a failure (see above)") : colors.green("✔ demo complete")} in ${Math.round(performance.now() - started)} ms; ${options.keep ? `kept ${dir}` : "cleaned up"}`,
    );
    return failed ? 1 : 0;
  });

cli.command("schema", "Print the JSON Schema of the app spec (for editors and the YAML language server)").action(() => {
  print(JSON.stringify(appSpecJsonSchema(), null, 2));
  return 0;
});

cli.help();
cli.version(VERSION);
// cac prints `process.version`, which Bun and Deno set to the Node version they are compatible with.
cli.globalCommand.outputVersion = () =>
  print(`bc-gitops/${VERSION} ${process.platform}-${process.arch} ${runtimeName}-v${runtimeVersion}`);

/**
 * cac turns numeric-looking values into numbers (`--branch 1.10` would become 1.1, `--token 123`
 * a number); options are text, so put back exactly what was typed.
 */
function keepRawValues(options: Record<string, unknown>, argv: readonly string[]): void {
  for (const [key, value] of Object.entries(options)) {
    if (typeof value !== "number") continue;
    const flag = `--${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
    for (let i = 0; i < argv.length; i++) {
      if (argv[i] === flag && i + 1 < argv.length) options[key] = argv[i + 1];
      else if (argv[i]!.startsWith(`${flag}=`)) options[key] = argv[i]!.slice(flag.length + 1);
    }
  }
}

/** A count option (`-n 20`): a whole number, `fallback` when absent. */
function count(value: unknown, fallback: number, flag: string): number {
  if (value === undefined) return fallback;
  const text = String(value);
  if (!/^\d{1,9}$/.test(text)) throw new UsageError(`${flag}: expected a number of lines, got ${JSON.stringify(text)}`);
  return Number(text);
}

function summary(valid: number, errors: SpecIssue[], warnings: SpecIssue[]): string {
  const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? "" : "s"}`;
  const text = `${plural(valid, "valid app")}, ${plural(errors.length, "error")}, ${plural(warnings.length, "warning")}`;
  return errors.length ? colors.red(`✖ ${text}`) : colors.green(`✔ ${text}`);
}

function print(text: string): void {
  process.stdout.write(`${text}\n`);
}

async function main(argv: string[]): Promise<number> {
  try {
    cli.parse(argv, { run: false });
    keepRawValues(cli.options, argv);
    if (cli.options.help || cli.options.version) return 0;
    if (!cli.matchedCommand) {
      if (cli.args.length > 0) throw new UsageError(`unknown command "${cli.args[0]}"; run bc-gitops --help`);
      cli.outputHelp();
      return 0;
    }
    const code = await cli.runMatchedCommand();
    return typeof code === "number" ? code : 0;
  } catch (error) {
    const debug = argv.includes("--debug");
    const message = error instanceof Error ? error.message : String(error);
    process.stderr.write(`${colors.red("error")} ${message}\n`);
    if (debug && error instanceof Error && error.stack) process.stderr.write(`${error.stack}\n`);
    return 1;
  }
}

process.exitCode = await main(process.argv);
