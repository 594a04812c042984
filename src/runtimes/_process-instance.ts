/**
 * One process app as the `process` driver supervises it (see `process.ts` for the policy): the
 * instance outlives the runs of its child, restarts them after exits with a growing delay, gives
 * up on a crash loop, waits for a new run to be ready, reloads by signal or by a graceful restart,
 * and stops the whole process group.
 */
import { connect } from "node:net";
import { mkdirSync, renameSync, symlinkSync } from "node:fs";
import { rm } from "node:fs/promises";
import { dirname, join } from "node:path";
import { probeAddress } from "../_address.ts";
import { groupMembers, hasProc, listensOn, residentBytes } from "../_proc.ts";
import { GitopsError, messageOf } from "../errors.ts";
import type { RotatingLog } from "../log-file.ts";
import type { AppSpec } from "../spec.ts";
import type { DriverStartOptions, Instance } from "./driver.ts";
import { stopStartRestore } from "./_driver-kit.ts";
import { note, startRun, type ExitInfo, type Run, type RunOptions } from "./_process-run.ts";
import type { TreeWatch } from "./_process-tree.ts";

/** The supervision numbers of the `process` driver (its options may set each; defaults in `process.ts`). */
export interface Policy {
  /** Delay before the first restart after an unexpected exit (default 1000 ms); doubles per exit. */
  restartDelayMs: number;
  /** Longest restart delay (default 60 000 ms). */
  maxRestartDelayMs: number;
  /** A run that stayed up this long resets the restart delay (default 60 000 ms). */
  resetAfterMs: number;
  /** Exits within {@link crashLoopWindowMs} that make a crash loop (default 5). */
  crashLoopExits: number;
  crashLoopWindowMs: number;
  /** How long the same code and settings are not started again after a crash loop (default 60 000 ms). */
  crashLoopCooldownMs: number;
  /** With health `none`: how long a new child must live for its start to count (default 500 ms). */
  settleMs: number;
  /** How often the memory watchdog looks at a Bun app's RSS (default 1000 ms). */
  memoryCheckMs: number;
  /** How often one walk of `/proc` records the descendants of every running app (default 5000 ms; see `_process-tree.ts`). */
  treeCheckMs: number;
  /** Output lines per second and app copied into the agent's log (default 200; the file gets all). */
  linesPerSecond: number;
}

/** What the driver remembers of an app across its instances. */
export interface AppRecord {
  live: Set<ProcessInstance>;
  log?: { file: RotatingLog; users: number };
  lastExit?: ExitInfo;
  gaveUp?: { at: number; key: string; reason: string };
}

/** What an instance needs of its driver. */
export interface InstanceHost {
  readonly localPath: string;
  readonly policy: Policy;
  /** The shared walk that records every run's descendants. */
  readonly watch: TreeWatch;
  record(app: string): AppRecord;
  openLog(app: string): RotatingLog;
  closeLog(app: string): Promise<void>;
  overlaps(from: AppSpec, to: AppSpec): boolean;
}

/** One app as a supervised process: survives the restarts of its child. */
export class ProcessInstance implements Instance {
  readonly kind = "process" as const;
  readonly port: number | undefined;
  readonly #driver: InstanceHost;
  readonly #record: AppRecord;
  readonly #log: RotatingLog;
  #o: DriverStartOptions;
  #run: Run | undefined;
  #state: "starting" | "running" | "backoff" | "failed" | "stopped" = "starting";
  #restarts = 0;
  #streak = 0;
  #exits: number[] = [];
  #timer: ReturnType<typeof setTimeout> | undefined;
  #stopping: Promise<void> | undefined;
  /** A restart in progress (stop waits for it, then stops what it started). */
  #spawning: Promise<void> | undefined;

  constructor(driver: InstanceHost, options: DriverStartOptions, port: number | undefined) {
    this.#driver = driver;
    this.#o = options;
    this.port = port;
    this.#record = driver.record(options.spec.name);
    this.#log = driver.openLog(options.spec.name);
    this.#record.live.add(this);
  }

  get #app(): string {
    return this.#o.spec.name;
  }

  /** First start: spawn and wait until ready; on failure everything is released and the error thrown. */
  async boot(): Promise<void> {
    try {
      // Another instance of the app still runs (an upgrade that overlaps): only its own socket counts.
      this.#run = await this.#launch(
        this.#o,
        [...this.#record.live].some((other) => other !== this),
      );
      this.#state = "running";
    } catch (error) {
      this.#state = "stopped";
      await this.#release();
      throw error;
    }
  }

  stop(): Promise<void> {
    return (this.#stopping ??= (async () => {
      this.#state = "stopped";
      clearTimeout(this.#timer);
      await this.#spawning;
      const run = this.#run;
      let killed = false;
      if (run) {
        run.expected = true;
        killed = (await run.stop(this.#o.stopTimeoutMs)).killed;
      }
      const left = (await run?.ended)?.left_running ?? [];
      await this.#release();
      if (killed) {
        throw new GitopsError(
          `${this.#app} did not exit within ${this.#o.stopTimeoutMs} ms of SIGTERM; its process group was killed with SIGKILL`,
          { code: "E_TIMEOUT", retry: "backoff" },
        );
      }
      if (left.length > 0) {
        const list = left.map((s) => `pid ${s.pid} (${s.reason})`).join(", ");
        throw new GitopsError(`${this.#app} is stopped, but what it started could not all be ended: ${list}`, {
          code: "E_RUNTIME",
          retry: "backoff",
        });
      }
    })());
  }

  /** Env changes need a new process: the runtime restarts it. */
  async reconfigure(): Promise<boolean> {
    return false;
  }

  /** `health.type: module` on a process app: healthy while its child runs. */
  async health(): Promise<boolean> {
    return this.#state === "running" && this.#run?.child.exit === undefined;
  }

  /**
   * Hot reload: with `reload_signal` the `current` symlink is re-pointed at the new revision and
   * the signal sent to the child (the app re-reads its code from there); otherwise a graceful
   * restart on the new revision (new process first when the app shares its port, else stop then
   * start). When the new revision does not start, the old one runs again and the error is thrown.
   */
  async reload(options: DriverStartOptions): Promise<Instance> {
    if (this.#state === "stopped") throw new GitopsError(`${this.#app} is stopped`, { code: "E_RUNTIME" });
    const signal = options.spec.reload_signal;
    if (signal) {
      this.#o = options;
      await this.#point(options.prepared.dir);
      const sent = this.#run?.child.signal(signal) === true;
      note(
        this.#log,
        `${sent ? `sent ${signal} to pid ${this.#run?.pid}` : "not running"} for revision ${options.prepared.revision}`,
      );
      return this;
    }
    const previous = this.#o;
    const old = this.#run;
    clearTimeout(this.#timer);
    if (old && old.child.exit === undefined && this.#driver.overlaps(previous.spec, options.spec)) {
      this.#run = await this.#launch(options, true);
      this.#o = options;
      await this.#retire(old);
    } else {
      this.#run = await stopStartRestore({
        stop: async () => {
          if (old) await this.#retire(old);
          this.#run = undefined;
        },
        start: () => this.#launch((this.#o = options)),
        restore: async () => void (this.#run = await this.#launch((this.#o = previous))),
        failed: (error, again) => {
          if (again) this.#giveUp(`the previous revision did not start again either: ${messageOf(again.error)}`);
          return error;
        },
      });
    }
    this.#state = "running";
    this.#streak = 0;
    this.#exits = [];
    return this;
  }

  async memory(): Promise<number | undefined> {
    return this.#run && this.#run.child.exit === undefined ? residentBytes(this.#run.pid) : undefined;
  }

  /** Extra status: the child's pid, crash restarts done in place, the last exit, and `starting` while waiting to restart. */
  info(): Record<string, unknown> {
    const alive = this.#run && this.#run.child.exit === undefined;
    return {
      ...(alive ? { pid: this.#run!.pid } : {}),
      restarts: this.#restarts,
      ...(this.#record.lastExit ? { last_exit: this.#record.lastExit } : {}),
      ...(this.#state === "backoff" ? { status: "starting" } : {}),
    };
  }

  // -------------------------------------------------------------------------------------------

  /** Spawns a run of `o` and waits until it is ready; a run that does not get there is killed. */
  async #launch(o: DriverStartOptions, overlapping = false): Promise<Run> {
    await this.#point(o.prepared.dir);
    const run = await startRun(this.#runOptions(o));
    void run.ended.then((exit) => this.#exited(run, exit));
    try {
      await this.#ready(run, o, overlapping);
      return run;
    } catch (error) {
      run.expected = true;
      await run.stop(o.stopTimeoutMs);
      await run.ended;
      throw error;
    }
  }

  async #ready(run: Run, o: DriverStartOptions, overlapping: boolean): Promise<void> {
    const { spec } = o;
    const what = `${spec.name} ${spec.version}`;
    const exited = async () => {
      const exit = await run.ended;
      return new GitopsError(`${what} ${exit.reason} during start: ${run.tail() || "no output"}`, {
        code: "E_RUNTIME",
        retry: "backoff",
      });
    };
    const target = readyTarget(spec, this.port);
    if (!target) {
      await Promise.race([run.child.exited, sleep(this.#driver.policy.settleMs)]);
      if (run.child.exit) throw await exited();
      return;
    }
    const deadline = Date.now() + o.startTimeoutMs;
    // Poll often while a start is still quick, less once it is slow (a start may take up to a minute).
    for (const started = Date.now(); ;) {
      const pause = Math.min(100, (overlapping ? 20 : 5) + (Date.now() - started) / 20);
      if (run.child.exit) throw await exited();
      const up =
        overlapping && hasProc
          ? await listensOn([run.pid, ...(await groupMembers(run.pid))], target.port)
          : await connects(target.host, target.port);
      if (up) return;
      if (Date.now() >= deadline) {
        throw new GitopsError(`${what} did not listen on ${target.host}:${target.port} within ${o.startTimeoutMs} ms`, {
          code: "E_TIMEOUT",
          retry: "backoff",
        });
      }
      await Promise.race([run.child.exited, sleep(pause)]);
    }
  }

  /** An exit: expected ones are history; others restart the app after the backoff, or end in a crash loop. */
  async #exited(run: Run, exit: ExitInfo): Promise<void> {
    this.#record.lastExit = exit;
    const { spec } = this.#o;
    const event = {
      app: spec.name,
      pid: exit.pid,
      version: spec.version,
      code: exit.code,
      signal: exit.signal,
      reason: exit.reason,
      expected: run.expected,
    };
    if (run.expected || run !== this.#run || this.#state !== "running") {
      this.#o.emit("bc_gitops:process:exit", { duration_ms: exit.duration_ms }, event);
      return;
    }
    const now = Date.now();
    if (now - run.startedAt >= this.#driver.policy.resetAfterMs) this.#streak = 0;
    this.#streak++;
    const { crashLoopWindowMs, crashLoopExits, restartDelayMs, maxRestartDelayMs } = this.#driver.policy;
    this.#exits = [...this.#exits.filter((at) => now - at < crashLoopWindowMs), now];
    if (this.#exits.length >= crashLoopExits) {
      this.#o.emit("bc_gitops:process:exit", { duration_ms: exit.duration_ms }, event);
      this.#giveUp(
        `crash loop: ${this.#exits.length} exits within ${Math.round(crashLoopWindowMs / 1000)} s, the last one ${exit.reason}`,
      );
      return;
    }
    const delay = Math.min(maxRestartDelayMs, restartDelayMs * 2 ** Math.min(this.#streak - 1, 30));
    this.#state = "backoff";
    this.#o.emit("bc_gitops:process:exit", { duration_ms: exit.duration_ms, restart_in_ms: delay }, event);
    this.#o.logger.warn(
      `pid ${exit.pid} ${exit.reason}${exit.signal === null && run.tail() ? `: ${run.tail()}` : ""}; restarting it in ${delay} ms`,
      { app: this.#app },
    );
    note(this.#log, `restarting in ${delay} ms`);
    this.#timer = setTimeout(() => (this.#spawning = this.#respawn()), delay);
  }

  async #respawn(): Promise<void> {
    if (this.#state !== "backoff") return;
    try {
      const run = await startRun(this.#runOptions(this.#o));
      this.#restarts++; // a real restart: a new process runs
      void run.ended.then((exit) => this.#exited(run, exit));
      this.#run = run;
      if (this.#state === "backoff") this.#state = "running";
    } catch (error) {
      if (this.#state === "backoff") this.#giveUp(`cannot start it again: ${messageOf(error)}`);
    } finally {
      this.#spawning = undefined;
    }
  }

  #giveUp(reason: string): void {
    this.#state = "failed";
    this.#record.gaveUp = { at: Date.now(), key: keyOf(this.#o), reason };
    this.#o.logger.error(`${reason}; not restarting it`, { app: this.#app });
    note(this.#log, `${reason}; not restarting it`);
    this.#o.onCrash(new GitopsError(reason, { code: "E_RUNTIME", retry: "backoff" }));
  }

  async #retire(run: Run): Promise<void> {
    run.expected = true;
    await run.stop(this.#o.stopTimeoutMs);
    await run.ended;
  }

  async #release(): Promise<void> {
    this.#record.live.delete(this);
    await this.#driver.closeLog(this.#app);
    const survivor = [...this.#record.live][0];
    if (survivor) await survivor.#point(survivor.#o.prepared.dir);
  }

  /** Points `run/<app>/current` at `dir`, atomically (a new symlink renamed over the old one). */
  async #point(dir: string): Promise<void> {
    const link = join(this.#driver.localPath, "run", this.#app, "current");
    const tmp = `${link}.tmp-${process.pid}-${Math.random().toString(36).slice(2)}`;
    try {
      // Synchronous: single small calls (see _fs-sync.ts).
      mkdirSync(dirname(link), { recursive: true });
      symlinkSync(dir, tmp);
      renameSync(tmp, link);
    } catch (error) {
      await rm(tmp, { force: true });
      this.#o.logger.debug(`cannot point ${link} at ${dir}: ${messageOf(error)}`, { app: this.#app });
    }
  }

  #runOptions(o: DriverStartOptions): RunOptions {
    const policy = this.#driver.policy;
    return {
      spec: o.spec,
      prepared: o.prepared,
      dataDir: o.dataDir,
      port: this.port,
      runDir: join(this.#driver.localPath, "run", o.spec.name),
      log: this.#log,
      logger: o.logger,
      emit: o.emit,
      memoryCheckMs: policy.memoryCheckMs,
      linesPerSecond: policy.linesPerSecond,
      reapGraceMs: Math.min(o.stopTimeoutMs, 2000),
      watch: this.#driver.watch,
    };
  }
}

/** What identifies "the same code and settings" for the crash-loop cool-down. */
export function keyOf(o: DriverStartOptions): string {
  const { spec, prepared } = o;
  return JSON.stringify([spec.version, prepared.revision, spec.env, spec.command ?? null, spec.limits ?? null]);
}

/** Where readiness is checked (where the health monitor will check), or `undefined` without an http/tcp check. */
function readyTarget(spec: AppSpec, port: number | undefined): { host: string; port: number } | undefined {
  return spec.health.type === "http" || spec.health.type === "tcp" ? probeAddress(spec, port) : undefined;
}

function connects(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(1000, () => done(false));
    socket.once("connect", () => done(true));
    socket.once("error", () => done(false));
  });
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
