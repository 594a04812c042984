/**
 * The `process` isolation driver (`vm` is its alias): each app runs as a supervised child process
 * in its own process group, from its revision's directory (see `_process-run.ts` for the command,
 * environment, output and memory watchdog).
 *
 * Supervision lives here, in the instance, not in the reconciler: a child that exits while it
 * should run is restarted in place after 1 s, doubling up to 60 s, the delay reset once a run
 * stayed up 60 s. Five exits within 60 s are a crash loop: the instance gives up, reports the app
 * crashed (the default runtime marks it `failed` with the reason), and refuses to start the same
 * code with the same settings again for a cool-down of 60 s, so the reconciler's restarts (and its
 * own backoff) pace a crash loop at a few spawns a minute; any change of code or settings, or the
 * end of the cool-down, lets it start at once (a refused start spawns nothing and is not counted
 * as a restart). Stopping sends SIGTERM to the whole group, then SIGKILL after the stop timeout;
 * once the app exited (stopped or not), what it started outside its group goes too: children that
 * called `setsid`, double-forked daemons (see `_process-tree.ts` for how they are found, and the
 * limits). Pid files let the next agent end what this one left running if it is killed: an app's
 * leftovers when it starts again, and at the runtime's first operation those of apps state.json no
 * longer remembers.
 */
import { readdir, readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import { hasProc, isZombie, procStat } from "../_proc.ts";
import { GitopsError } from "../errors.ts";
import { endGroup } from "../exec.ts";
import { RotatingLog, appLogPath } from "../log-file.ts";
import { silentLogger, type Logger } from "../logger.ts";
import type { AppSpec } from "../spec.ts";
import type { Driver, DriverStartOptions, Instance } from "./driver.ts";
import { keyOf, ProcessInstance, type AppRecord, type InstanceHost, type Policy } from "./_process-instance.ts";
import { portFor, type PidFile } from "./_process-run.ts";
import { RunTree, TREE_CHECK_MS, TreeWatch } from "./_process-tree.ts";

/** Options of {@link ProcessDriver}; the numbers are the supervision policy (tests use small ones; see {@link Policy}). */
export interface ProcessDriverOptions extends Partial<Policy> {
  /** `<local_path>`: logs go to `logs/<app>.log`, pid files and the `current` symlink to `run/<app>/`. */
  localPath: string;
  logger?: Logger;
  /** Log file rotation (defaults 10 MiB, 3 files kept). */
  logMaxBytes?: number;
  logKeep?: number;
}

const DEFAULTS: Policy = {
  restartDelayMs: 1000,
  maxRestartDelayMs: 60_000,
  resetAfterMs: 60_000,
  crashLoopExits: 5,
  crashLoopWindowMs: 60_000,
  crashLoopCooldownMs: 60_000,
  settleMs: 500,
  memoryCheckMs: 1000,
  treeCheckMs: TREE_CHECK_MS,
  linesPerSecond: 200,
};

/** Runs apps as supervised child processes. One per runtime. */
export class ProcessDriver implements Driver, InstanceHost {
  readonly isolation = "process" as const;
  readonly localPath: string;
  readonly logger: Logger;
  readonly policy: Policy;
  readonly watch: TreeWatch;
  readonly #log: { maxBytes?: number; keep?: number };
  readonly #apps = new Map<string, AppRecord>();

  constructor(options: ProcessDriverOptions) {
    this.localPath = options.localPath;
    this.logger = options.logger ?? silentLogger;
    const given = Object.keys(DEFAULTS).flatMap((key) => {
      const value = (options as unknown as Record<string, unknown>)[key];
      return typeof value === "number" ? [[key, value]] : [];
    });
    this.policy = { ...DEFAULTS, ...(Object.fromEntries(given) as Partial<Policy>) };
    this.watch = new TreeWatch(this.policy.treeCheckMs);
    this.#log = {
      ...(options.logMaxBytes ? { maxBytes: options.logMaxBytes } : {}),
      ...(options.logKeep !== undefined ? { keep: options.logKeep } : {}),
    };
  }

  /**
   * Spawns the app and resolves once it is ready: listening on its health port (http/tcp health),
   * or still alive after `settleMs` (no health check). Throws `E_RUNTIME` when it exits first or
   * the same code crash-looped less than the cool-down ago, `E_TIMEOUT` when it does not listen
   * within `startTimeoutMs` (it is killed), `E_EXEC` when it cannot be spawned.
   */
  async start(options: DriverStartOptions): Promise<Instance> {
    const { spec } = options;
    const record = this.record(spec.name);
    const key = keyOf(options);
    if (record.gaveUp) {
      const left = record.gaveUp.at + this.policy.crashLoopCooldownMs - Date.now();
      if (record.gaveUp.key === key && left > 0) {
        throw new GitopsError(
          `${spec.name} is in a crash loop (${record.gaveUp.reason}); it is started again in ${Math.ceil(left / 1000)} s, or at once when its code or settings change`,
          // `refused`: nothing was spawned, so the runtime does not count it as a restart.
          { code: "E_RUNTIME", retry: "backoff", details: { refused: "crash_loop" } },
        );
      }
      delete record.gaveUp;
    }
    if (spec.health.type === "module") {
      options.logger.warn(
        `health.type module cannot call into a separate process; it is checked as "the process runs"`,
        { app: spec.name },
      );
    }
    if (record.live.size === 0) await this.#sweep(spec.name, options.stopTimeoutMs);
    const instance = new ProcessInstance(this, options, await portFor(spec));
    await instance.boot();
    return instance;
  }

  /**
   * True when a new instance of `to` may start while one of `from` still runs (upgrades and
   * restarts on new code then start the new process first and stop the old one once the new one
   * is ready): the app opts in with `env.reuse_port: true` (it binds with `SO_REUSEPORT`), and
   * `/proc` can tell which of the two listens.
   */
  overlaps(from: AppSpec, to: AppSpec): boolean {
    return (
      hasProc &&
      from.isolation === "process" &&
      to.isolation === "process" &&
      to.env.reuse_port === true &&
      from.env.reuse_port === true
    );
  }

  /** Stops whatever instance is still running (agent shutdown after the runtime stopped its apps) and closes the log files. */
  async dispose(): Promise<void> {
    const live = [...this.#apps.values()].flatMap((r) => [...r.live]);
    await Promise.all(live.map((i) => i.stop().catch(() => {})));
  }

  /** The driver's memory of `app`. */
  record(app: string): AppRecord {
    let record = this.#apps.get(app);
    if (!record) this.#apps.set(app, (record = { live: new Set() }));
    return record;
  }

  /** The app's log file, shared by its instances (an upgrade's two processes write to one file). */
  openLog(app: string): RotatingLog {
    const record = this.record(app);
    if (!record.log) {
      const file = new RotatingLog({
        path: appLogPath(this.localPath, app),
        ...this.#log,
        onError: (message) => this.logger.warn(`${message}`, { app }),
      });
      record.log = { file, users: 0 };
    }
    record.log.users++;
    return record.log.file;
  }

  /** Gives back one use of the app's log file; the last one closes it (after writing what is queued). */
  async closeLog(app: string): Promise<void> {
    const record = this.record(app);
    if (!record.log || --record.log.users > 0) return;
    const { file } = record.log;
    delete record.log;
    await file.close();
  }

  /**
   * Ends what a previous agent started and left running (it was killed, or crashed) for every app
   * `keep` says no to: the apps that are neither running here nor remembered in state.json. Resolves
   * with the apps that had something left. (A kept app is swept when it is started.)
   */
  async sweep(keep: (app: string) => boolean, graceMs: number): Promise<string[]> {
    const apps = await readdir(join(this.localPath, "run")).catch(() => [] as string[]);
    const swept: string[] = [];
    for (const app of apps.filter((name) => !keep(name))) {
      if (await this.#sweep(app, graceMs, "it is not deployed here any more")) swept.push(app);
    }
    return swept;
  }

  /**
   * Ends processes a previous agent started for `app` and left behind: for each pid file, its
   * process group if the process is still the same one (pid and start time), then the
   * descendants it recorded and every process carrying its run's marker (`_process-tree.ts`).
   * True when something still ran.
   */
  async #sweep(app: string, graceMs: number, why = "before it starts again"): Promise<boolean> {
    const dir = join(this.localPath, "run", app, "pids");
    let found = false;
    for (const name of await readdir(dir).catch(() => [] as string[])) {
      const file = join(dir, name);
      const saved = (await readFile(file, "utf8")
        .then(JSON.parse)
        .catch(() => undefined)) as Partial<PidFile> | undefined;
      if (typeof saved?.pid === "number") {
        const stat = await procStat(saved.pid);
        const same = stat !== undefined && !!saved.start && stat.startTime === saved.start && !isZombie(stat);
        const tree = new RunTree(saved.pid, typeof saved.run === "string" ? saved.run : "", {
          rootAlive: () => same,
          known: Array.isArray(saved.descendants) ? saved.descendants : [],
        });
        await tree.sample(); // what it started is still under it before its group goes
        if (same && stat.pgrp === saved.pid) {
          found = true;
          this.logger.warn(`stopping pid ${saved.pid}, left running by a previous agent (${why})`, { app });
          await endGroup(saved.pid, graceMs);
        }
        const { ended, survivors } = await tree.end(graceMs);
        if (ended.length > 0) {
          found = true;
          this.logger.warn(
            `ended ${ended.map((p) => `pid ${p.pid}`).join(", ")}, started by pid ${saved.pid} and left running by a previous agent`,
            { app },
          );
        }
        if (survivors.length > 0) {
          this.logger.error(
            `could not end ${survivors.map((p) => `pid ${p.pid} (${p.reason})`).join(", ")}, left running by a previous agent`,
            { app },
          );
        }
      }
      await rm(file, { force: true });
    }
    return found;
  }
}
