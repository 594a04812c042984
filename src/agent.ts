/**
 * The library entry point (SPEC section 10): `createAgent(options)` wires configuration, the git
 * source, the runtime, the reconciler, the loop and telemetry, and exposes the agent's API. Its
 * options, their validation and the runtime option's loading are in `_agent-options.ts`.
 */
import { chmod, mkdir } from "node:fs/promises";
import { join } from "node:path";
import { agentConfigOf, loadRuntime, type AgentOptions } from "./_agent-options.ts";
import { AppLogs } from "./app-logs.ts";
import type { AgentConfig } from "./config.ts";
import { GitopsError } from "./errors.ts";
import { Fleet } from "./fleet/fleet.ts";
import { hostIdentity } from "./fleet/host.ts";
import { firstTickWait, jitterMs, nextPollDelay } from "./fleet/jitter.ts";
import { GitSource } from "./git.ts";
import type { Checkout } from "./_desired.ts";
import { serve, type HttpServer } from "./http-server.ts";
import { silentLogger, type Logger } from "./logger.ts";
import { Loop } from "./loop.ts";
import { Notifier, type NotificationStats } from "./notify.ts";
import type { DeployedSpec } from "./plan.ts";
import { Reconciler, type ReconcileOptions, type TickResult } from "./reconciler.ts";
import { registerSecret } from "./redact.ts";
import type { AppState, HotReloadResult, Runtime } from "./runtime.ts";
import { controlApiAddress, createHandler } from "./server.ts";
import { AppSpec, type AppSpecInput } from "./spec.ts";
import { readState, statePath, writeState } from "./state.ts";
import { StateJournal, journalPath } from "./state-journal.ts";
import { checkAgeKeyFile } from "./secrets/age-keys.ts";
import { checkVerifyConfig } from "./verify.ts";
import type { AgentStatus } from "./status.ts";
import { Telemetry, type EventHandler, type EventName } from "./telemetry.ts";

// The options live with their validation; the public API names them here, as before.
export { agentOptionsOf, type AgentOptions, type RuntimeOption } from "./_agent-options.ts";

/** The agent (SPEC section 10). */
export interface Agent {
  /** Clones, restores remembered apps, runs the first reconcile and starts the loop; resolves after the first tick. */
  start(): Promise<TickResult>;
  /** Stops the loop, then every app (dependents first). */
  stop(): Promise<void>;
  status(): Promise<AgentStatus>;
  /**
   * Runs a tick now (or the follow-up tick if one is running) and returns its result. With `head`
   * (the new branch head a verified webhook named) the tick fetches without `git ls-remote` first.
   */
  reconcile(options?: ReconcileOptions): Promise<TickResult>;
  /** Alias of {@link Agent.reconcile}. */
  sync(): Promise<TickResult>;
  getDesiredState(): Promise<Record<string, AppSpec>>;
  getCurrentState(): Promise<Record<string, AppState>>;
  /** What is deployed, as the next tick plans from it: each app's spec, code revision and spec file (`bc-gitops plan --url`). */
  getDeployedState(): Promise<Record<string, DeployedSpec>>;
  /** One app's state; for an app placed on this host also its effective spec, the overrides that applied and its rollout wave. */
  getAppStatus(name: string): Promise<AppState | undefined>;
  /** Replaces this host's labels (built-in ones stay); the next reconcile removes and deploys apps to match. Throws E_CONFIG for a bad label. */
  setLabels(labels: Record<string, string>): void;
  /** Deploys a spec now, bypassing git; the next reconcile brings the app back in line with the repository. */
  deploy(spec: AppSpecInput): Promise<AppState>;
  remove(name: string): Promise<void>;
  upgrade(name: string, version: string): Promise<AppState>;
  hotReload(name: string): Promise<HotReloadResult>;
  /** Subscribes to a telemetry event (or `"*"`); returns the unsubscribe function. */
  on(name: EventName | "*", handler: EventHandler): () => void;
  /** The validated configuration. */
  readonly config: AgentConfig;
  /** Where the control API listens once started (`127.0.0.1:PORT`, the real port when `listen` asked for 0); `undefined` when off or not started. */
  readonly address: string | undefined;
  /** The apps' logs (`GET /apps/:name/logs`): process apps' files, the in-memory rings of the others. */
  readonly appLogs: AppLogs;
  /** The host name events and notifications carry. */
  readonly host: string;
  /** Each `notify` target's counters. */
  notificationStats(): NotificationStats[];
}

/** Creates an agent. Validates the options at once (throws `GitopsError` E_CONFIG); does nothing else until `start()`. */
export function createAgent(options: AgentOptions): Agent {
  const config = agentConfigOf(options);
  controlApiAddress(config.listen, config.token); // refuses a non-loopback address without a token now, not at start()
  registerSecret(config.token);
  registerSecret(config.webhook_secret);
  return new AgentImpl(config, options);
}

class AgentImpl implements Agent {
  readonly config: AgentConfig;
  readonly #options: AgentOptions;
  readonly #telemetry: Telemetry;
  readonly #logger: Logger;
  readonly #fleet: Fleet;
  /** Aborted to skip the first tick's jitter (a reconcile was asked for). */
  readonly #skipJitter = new AbortController();
  #runtime: Runtime | undefined;
  #reconciler: Reconciler | undefined;
  #loop: Loop<TickResult> | undefined;
  #git: GitSource | undefined;
  /** The newest head a webhook named, for the next tick to fetch directly. */
  #head: string | undefined;
  #starting: Promise<TickResult> | undefined;
  #stopped = false;
  readonly #abort = new AbortController();
  #server: HttpServer | undefined;
  readonly appLogs: AppLogs;
  readonly host: string;
  readonly #notifier: Notifier;
  /** The last commit's committer date, once read. */
  #commitAt: { commit: string; at: string } | undefined;

  constructor(config: AgentConfig, options: AgentOptions) {
    this.config = config;
    this.#options = options;
    this.#logger = options.logger ?? silentLogger;
    this.#fleet = new Fleet({
      identity: hostIdentity(config.host, config.labels),
      // Asked only by a tick, which runs once start() has created the git source.
      commitTime: (commit, path, signal) => this.#git!.commitTime(commit, path, signal),
      logger: this.#logger,
    });
    // Every event says which host it comes from, so a fleet's events can be told apart once collected.
    this.#telemetry = new Telemetry({
      context: () => ({ host: this.#fleet.identity.host, labels: this.#fleet.identity.labels }),
    });
    this.host = this.#fleet.identity.host;
    this.appLogs = new AppLogs({ localPath: config.local_path, ...(options.now ? { now: options.now } : {}) });
    this.#notifier = new Notifier({ targets: config.notify, host: this.host, logger: this.#logger });
    if (config.notify.length > 0) this.#telemetry.on("*", this.#notifier.observe);
  }

  notificationStats(): NotificationStats[] {
    return this.#notifier.stats();
  }

  get address(): string | undefined {
    return this.#server?.address;
  }

  start(): Promise<TickResult> {
    if (this.#stopped) {
      return Promise.reject(
        new GitopsError("the agent is stopped; create a new one to start again", {
          code: "E_ABORTED",
          retry: "stalled",
        }),
      );
    }
    return (this.#starting ??= this.#start(this.#abort.signal));
  }

  async #start(signal: AbortSignal): Promise<TickResult> {
    const { config } = this;
    const listen = controlApiAddress(config.listen, config.token);
    // Created first so its metrics count the restore and the first tick.
    const api = listen && createHandler(this, { logger: this.#logger, signal: this.#abort.signal });
    // Private: the clone's config can hold the credentials of repo_url, and state.json lists what runs.
    await mkdir(config.local_path, { recursive: true, mode: 0o700 });
    await mkdir(join(config.local_path, "git"), { recursive: true, mode: 0o700 });
    await chmod(join(config.local_path, "git"), 0o700);
    const now = this.#options.now ?? Date.now;
    const git = (this.#git = new GitSource({
      repoUrl: config.repo_url,
      branch: config.branch,
      dir: join(config.local_path, "git"),
      timeoutMs: config.git_timeout,
      logger: this.#logger,
      emit: this.#telemetry.emit,
    }));
    if (config.verify) await checkVerifyConfig(config.verify);
    if (config.age_key_file)
      await checkAgeKeyFile(config.age_key_file).catch((error: unknown) => {
        throw new GitopsError((error as Error).message, { code: "E_CONFIG", retry: "stalled", cause: error });
      });
    const file = statePath(config.local_path);
    const state = await readState(file, this.#logger);
    // Actions an agent killed mid-tick completed after its last state.json: fold them in first.
    const journal = new StateJournal(journalPath(config.local_path));
    const replayed = await journal.replay(state, this.#logger);
    if (replayed > 0) {
      this.#logger.info(`recovered ${replayed} action(s) the previous agent completed after its last state.json`);
      await writeState(file, state);
      await journal.clear();
    }
    // What the runtime reads of the agent's state, created before both: the reconciler moves the
    // checkout and records deployed apps in `state`; the runtime only reads them.
    const checkout: Checkout = {};
    this.#runtime = await loadRuntime(this.#options.runtime ?? config.runtime, {
      localPath: config.local_path,
      repoDir: () => checkout.repoDir,
      treeOf: (path) => checkout.treeOf?.(path),
      remembered: () => state.apps,
      requestReconcile: () => void this.#loop?.trigger().catch(() => {}),
      reloadBudget: config.reload_budget,
      // What apps log through ctx.log also goes to their in-memory log (GET /apps/:name/logs).
      logger: this.appLogs.tee(this.#logger),
      emit: this.#telemetry.emit,
    });
    const reconciler = new Reconciler({
      config,
      git,
      runtime: this.#runtime,
      emit: this.#telemetry.emit,
      logger: this.#logger,
      now,
      state,
      statePath: file,
      journal,
      checkout,
      fleet: this.#fleet,
    });
    this.#reconciler = reconciler;
    if (listen && api) {
      // Before any app starts: a taken port fails here, and /healthz and /status answer during a
      // long restore or first reconcile.
      this.#server = await serve(api, {
        ...listen,
        onError: (error) => this.#logger.error(`control API: ${(error as Error).message}`),
      });
      this.#logger.info(`control API listening on http://${this.#server.address}`);
    }
    const stopped = () =>
      new GitopsError("the agent was stopped while starting", { code: "E_ABORTED", retry: "stalled" });
    await reconciler.primeFromSnapshot(signal);
    if (signal.aborted) throw stopped();
    await reconciler.restore(signal);
    if (signal.aborted) throw stopped();
    const random = this.#options.random ?? Math.random;
    const jitter = jitterMs(config.reconcile_jitter, config.reconcile_interval);
    const poll = { interval: config.reconcile_interval, jitter, random };
    if (this.#options.jitterFirstTick && state.commit) {
      // A restarted fleet would otherwise fetch all at once; its apps already run from the local cache.
      await firstTickWait(jitter, random, AbortSignal.any([signal, this.#skipJitter.signal]), this.#logger);
      if (signal.aborted) throw stopped();
    }
    this.#loop = new Loop<TickResult>({
      tick: (tickSignal) => {
        const head = this.#head;
        this.#head = undefined;
        return reconciler.tick(tickSignal, { head });
      },
      nextDelay: () => nextPollDelay(reconciler.nextDelay(), { ...poll, due: this.#fleet.nextDue(), now: now() }),
    });
    return this.#loop.start();
  }

  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    // Abort first: a restore or first tick in progress ends after the app it is working on, not after all of them.
    this.#abort.abort();
    await this.#loop?.stop();
    await this.#starting?.catch(() => {});
    await this.#server?.close();
    await this.#git?.close();
    if (this.#runtime?.stopAll) {
      await this.#runtime.stopAll();
    } else if (this.#runtime && this.#reconciler) {
      // No stopAll: stop apps one by one, dependents before their dependencies. They stay in
      // state.json, so the next start brings them back.
      for (const name of this.#reconciler.stopOrder()) {
        await this.#runtime
          .remove(name)
          .catch((error) => this.#logger.warn(`stopping ${name} failed: ${(error as Error).message}`));
      }
    }
    await this.#notifier.close();
    this.#logger.info("agent stopped");
  }

  async status(): Promise<AgentStatus> {
    const { host, labels } = this.#fleet.identity;
    const status = this.#reconciler?.status();
    const at = status?.last_commit ? await this.#lastCommitAt(status.last_commit) : null;
    return {
      ...(status
        ? { ...status, last_commit_at: at }
        : {
            status: "initializing",
            last_commit: null,
            app_count: 0,
            healthy_count: 0,
            last_reconcile: { at: null, duration_ms: null, error: null },
            errors: [],
          }),
      host,
      labels: { ...labels },
    };
  }

  /** When `commit` was made (its committer date, from the clone's object store); `null` when it cannot be read. */
  async #lastCommitAt(commit: string): Promise<string | null> {
    if (this.#commitAt?.commit === commit) return this.#commitAt.at;
    const info = await this.#git?.objects.commit(commit).catch(() => undefined);
    if (!info || !Number.isFinite(info.committedAt)) return null;
    this.#commitAt = { commit, at: new Date(info.committedAt * 1000).toISOString() };
    return this.#commitAt.at;
  }

  reconcile(options: ReconcileOptions = {}): Promise<TickResult> {
    if (!this.#loop) {
      this.#skipJitter.abort(); // someone is waiting: the first tick runs now
      return this.start();
    }
    if (options.head) this.#head = options.head;
    return this.#loop.trigger();
  }

  setLabels(labels: Record<string, string>): void {
    this.#fleet.setLabels(labels);
  }

  sync(): Promise<TickResult> {
    return this.reconcile();
  }

  async getDesiredState(): Promise<Record<string, AppSpec>> {
    return this.#reconciler?.desiredSpecs() ?? {};
  }

  async getCurrentState(): Promise<Record<string, AppState>> {
    const apps = this.#reconciler?.apps() ?? {};
    for (const [name, app] of Object.entries(apps)) apps[name] = this.#fleet.annotate(app);
    return apps;
  }

  async getDeployedState(): Promise<Record<string, DeployedSpec>> {
    return this.#reconciler?.deployedApps() ?? {};
  }

  async getAppStatus(name: string): Promise<AppState | undefined> {
    const apps = this.#reconciler?.apps();
    return apps && Object.hasOwn(apps, name) ? this.#fleet.withDetail(apps[name]!) : undefined;
  }

  async deploy(input: AppSpecInput): Promise<AppState> {
    const spec = AppSpec.parse(input);
    const reconciler = this.#started();
    const current = reconciler.apps()[spec.name];
    const deployed = await this.getDeployedSpec(spec.name);
    if (current && deployed) {
      await reconciler.applyManual({ type: "upgrade", app: spec.name, spec, from: deployed, reason: "manual deploy" });
    } else {
      await reconciler.applyManual({ type: "deploy", app: spec.name, spec });
    }
    return reconciler.apps()[spec.name]!;
  }

  async remove(name: string): Promise<void> {
    const reconciler = this.#started();
    const deployed = await this.getDeployedSpec(name);
    if (!deployed)
      throw new GitopsError(`no app named "${name}" is deployed`, { code: "E_NOT_FOUND", retry: "stalled" });
    await reconciler.applyManual({ type: "remove", app: name, from: deployed });
  }

  async upgrade(name: string, version: string): Promise<AppState> {
    const reconciler = this.#started();
    const from = await this.getDeployedSpec(name);
    if (!from) throw new GitopsError(`no app named "${name}" is deployed`, { code: "E_NOT_FOUND", retry: "stalled" });
    const spec = AppSpec.parse({ ...from, version });
    await reconciler.applyManual({
      type: "upgrade",
      app: name,
      spec,
      from,
      reason: `version ${from.version} -> ${version} (manual)`,
    });
    return reconciler.apps()[name]!;
  }

  async hotReload(name: string): Promise<HotReloadResult> {
    const reconciler = this.#started();
    const spec = await this.getDeployedSpec(name);
    if (!spec) throw new GitopsError(`no app named "${name}" is deployed`, { code: "E_NOT_FOUND", retry: "stalled" });
    // One exclusive section with ticks and manual operations, through the tick's own path: the
    // same events, and a failure in status.
    return reconciler.hotReload(name, this.#abort.signal);
  }

  on(name: EventName | "*", handler: EventHandler): () => void {
    return this.#telemetry.on(name, handler);
  }

  /** @internal The spec an app was last applied from. */
  async getDeployedSpec(name: string): Promise<AppSpec | undefined> {
    return this.#reconciler?.deployedSpec(name);
  }

  #started(): Reconciler {
    if (!this.#reconciler)
      throw new GitopsError("the agent is not started: call agent.start() first", {
        code: "E_RUNTIME",
        retry: "stalled",
      });
    return this.#reconciler;
  }
}
