/**
 * Everything a process app started, also what left its process group (SPEC section 3: stopping an
 * app ends what it started). Ending the group reaches most of it; a child that called `setsid`, or
 * a daemon that double-forked, is in another group, and once its parent exited it is re-parented
 * to init, so walking parents at stop time cannot find it. So, on Linux:
 *
 * - every run carries a marker in its environment ({@link RUN_ID_VAR}), which children inherit:
 *   at the end of a run every process started with it is ended, wherever it went;
 * - while the run lives, the descendants of its child are recorded (a shared `/proc` walk every few
 *   seconds, and once more just before a stop), so a descendant that cleared its environment is
 *   still known by pid and start time once its parent is gone.
 *
 * Limits: a descendant that cleared its environment and lost its parent between two walks, or that
 * runs as another user (the agent may not signal it), escapes; one that survives SIGKILL (stuck in
 * the kernel) is reported. Without `/proc` (macOS) only the process group is ended.
 */
import { hasProc, isZombie, procStat, procTable, processesWithEnv, type ProcId, type ProcStat } from "../_proc.ts";

/** The environment variable that marks every process of one run (a random id per run). */
export const RUN_ID_VAR = "BC_GITOPS_RUN_ID";

/** A process that could not be ended, and why. */
export interface Survivor extends ProcId {
  reason: string;
}

/** What {@link endProcesses} did. */
export interface Ended {
  /** Processes that ran and are gone now. */
  ended: ProcId[];
  survivors: Survivor[];
}

/**
 * How often the shared walk looks for new descendants by default. A walk reads `/proc/<pid>/stat`
 * of every process: measured here for ~100 processes, ≈3 ms on Bun, ≈16 ms on Deno, ≈40 ms of
 * thread-pool reads on Node. It is only the second net (the marker and the walk before a stop find
 * the rest), so it runs rarely.
 */
export const TREE_CHECK_MS = 5000;
/** How long a SIGKILLed process gets to disappear before it is reported as surviving. */
const KILL_WAIT_MS = 1000;
const POLL_MS = 50;

/** The descendants of one run: what it started, in its process group or not. */
export class RunTree {
  /** The run's child (the root of the tree). */
  readonly root: number;
  /** The value of {@link RUN_ID_VAR} in the run's environment. */
  readonly marker: string;
  /** Every descendant seen and still alive as far as the last walk knows: pid → start time. */
  readonly #known = new Map<number, string>();
  readonly #rootAlive: () => boolean;
  readonly #persist: ((outside: ProcId[]) => Promise<void>) | undefined;
  #persisted = "[]";
  #writing: Promise<void> = Promise.resolve();
  #closed = false;

  /**
   * @param rootAlive whether the root is still the run's child (its pid is walked from only then)
   * @param persist called with the descendants outside the root's process group whenever they change (the pid file)
   */
  constructor(
    root: number,
    marker: string,
    options: { rootAlive: () => boolean; known?: readonly ProcId[]; persist?: (outside: ProcId[]) => Promise<void> },
  ) {
    this.root = root;
    this.marker = marker;
    this.#rootAlive = options.rootAlive;
    this.#persist = options.persist;
    for (const { pid, start } of options.known ?? []) this.#known.set(pid, start);
  }

  /** The recorded descendants (pid and start time). */
  get known(): ProcId[] {
    return [...this.#known].map(([pid, start]) => ({ pid, start }));
  }

  /** Walks `/proc` now (just before a stop: children that left the group are still under the root). */
  async sample(): Promise<void> {
    if (hasProc) this.update(await procTable());
  }

  /** Forgets what exited (or whose pid now names another process) and records new descendants of the root and of what it knows. */
  update(table: ReadonlyMap<number, ProcStat>): void {
    for (const [pid, start] of this.#known) {
      const stat = table.get(pid);
      if (!stat || stat.startTime !== start || isZombie(stat)) this.#known.delete(pid);
    }
    const children = new Map<number, number[]>();
    for (const [pid, stat] of table)
      if (!isZombie(stat)) children.set(stat.ppid, [...(children.get(stat.ppid) ?? []), pid]);
    const queue = [...(this.#rootAlive() ? [this.root] : []), ...this.#known.keys()];
    while (queue.length > 0) {
      for (const child of children.get(queue.pop()!) ?? []) {
        if (child === this.root || child === process.pid || this.#known.has(child)) continue;
        this.#known.set(child, table.get(child)!.startTime);
        queue.push(child);
      }
    }
    const persist = this.#persist;
    if (!persist || this.#closed) return;
    const outside = this.known.filter(({ pid }) => table.get(pid)?.pgrp !== this.root);
    const text = JSON.stringify(outside);
    if (text !== this.#persisted) {
      this.#persisted = text;
      this.#writing = this.#writing.then(() => persist(outside)).catch(() => {});
    }
  }

  /** Stops recording (the run ended); resolves once a pending write of the pid file is done. */
  close(): Promise<void> {
    this.#closed = true;
    return this.#writing;
  }

  /**
   * Ends every recorded descendant that still runs and every process carrying this run's marker:
   * SIGTERM, then SIGKILL after `graceMs`. Resolves with what was ended and what could not be.
   */
  async end(graceMs: number): Promise<Ended> {
    if (!hasProc) return { ended: [], survivors: [] };
    const marked = this.marker
      ? ((await processesWithEnv(RUN_ID_VAR, new Set([this.marker]))).get(this.marker) ?? [])
      : [];
    const targets = new Map<number, string>(this.#known);
    for (const { pid, start } of marked) targets.set(pid, start);
    targets.delete(this.root);
    this.#known.clear();
    return endProcesses(
      [...targets].map(([pid, start]) => ({ pid, start })),
      graceMs,
    );
  }
}

/** Runs one `/proc` walk every `intervalMs` for all live runs of a driver (one walk, however many apps). */
export class TreeWatch {
  readonly #trees = new Set<RunTree>();
  readonly #intervalMs: number;
  #timer: ReturnType<typeof setInterval> | undefined;
  #busy = false;

  constructor(intervalMs: number) {
    this.#intervalMs = intervalMs;
  }

  add(tree: RunTree): void {
    this.#trees.add(tree);
    if (this.#timer || !hasProc || this.#intervalMs <= 0) return;
    this.#timer = setInterval(() => void this.#walk(), this.#intervalMs);
    this.#timer.unref?.();
  }

  delete(tree: RunTree): void {
    this.#trees.delete(tree);
    if (this.#trees.size > 0) return;
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  async #walk(): Promise<void> {
    if (this.#busy) return;
    this.#busy = true;
    try {
      const table = await procTable();
      for (const tree of this.#trees) tree.update(table);
    } finally {
      this.#busy = false;
    }
  }
}

/** Signals a process (`undefined` = sent), or why it could not be: `process.kill` by default; tests pass their own. */
export type Send = (pid: number, signal: NodeJS.Signals) => string | undefined;

const send: Send = (pid, signal) => {
  try {
    process.kill(pid, signal);
    return undefined;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    return code === "ESRCH"
      ? undefined
      : code === "EPERM"
        ? "the agent is not permitted to signal it (another user's process)"
        : String(code ?? error);
  }
};

/**
 * SIGTERM to each of `targets` that is still the same process (pid and start time), SIGKILL to
 * what is left after `graceMs`; resolves with those that ended, and those still running after that and why.
 */
export async function endProcesses(targets: readonly ProcId[], graceMs: number, signal: Send = send): Promise<Ended> {
  const running = async (t: ProcId) => {
    const stat = await procStat(t.pid);
    return stat !== undefined && stat.startTime === t.start && !isZombie(stat);
  };
  const left = async (list: readonly ProcId[]) =>
    (await Promise.all(list.map(async (t) => ((await running(t)) ? [t] : [])))).flat();
  let alive = await left(targets);
  const found = alive;
  if (alive.length === 0) return { ended: [], survivors: [] };
  const refused = new Map<number, string>();
  for (const t of alive) {
    const why = signal(t.pid, "SIGTERM");
    if (why) refused.set(t.pid, why);
  }
  for (const deadline = Date.now() + graceMs; Date.now() < deadline; await sleep(POLL_MS)) {
    alive = await left(alive);
    if (alive.every((t) => refused.has(t.pid))) break;
  }
  for (const t of alive) {
    if (refused.has(t.pid)) continue;
    const why = signal(t.pid, "SIGKILL");
    if (why) refused.set(t.pid, why);
  }
  for (const deadline = Date.now() + KILL_WAIT_MS; Date.now() < deadline; await sleep(POLL_MS)) {
    alive = await left(alive);
    if (alive.every((t) => refused.has(t.pid))) break;
  }
  alive = await left(alive);
  const survivors = alive.map((t) => ({ ...t, reason: refused.get(t.pid) ?? "still running after SIGKILL" }));
  return { ended: found.filter((t) => !alive.includes(t)), survivors };
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
