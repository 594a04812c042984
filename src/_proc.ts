/**
 * Readers of Linux's `/proc` for supervising child processes: which processes of a process group
 * are still alive (zombies do not count: an init that never reaps them is common in containers),
 * a process's resident memory and start time, the whole process table (to walk descendants),
 * which processes carry an environment variable, and whether a set of processes listens on a TCP
 * port. Every function answers `undefined`/empty instead of throwing where `/proc` is missing.
 */
import { existsSync } from "node:fs";
import { readdir, readFile, readlink } from "node:fs/promises";

/** True where `/proc/<pid>/stat` can be read (Linux). */
export const hasProc: boolean = existsSync("/proc/self/stat");

/** The fields of `/proc/<pid>/stat` the supervisor needs. */
export interface ProcStat {
  /** `R`, `S`, `D`, `Z` (zombie), `T`, … */
  state: string;
  ppid: number;
  pgrp: number;
  /** Start time in clock ticks since boot: with the pid, it identifies a process across pid reuse. */
  startTime: string;
}

/** `/proc/<pid>/stat` parsed, or `undefined` when the process does not exist (or there is no `/proc`). */
export async function procStat(pid: number): Promise<ProcStat | undefined> {
  try {
    const text = await readFile(`/proc/${pid}/stat`, "utf8");
    // The command name may contain spaces and parentheses: the fields start after the last ")".
    const rest = text.slice(text.lastIndexOf(")") + 2).split(" ");
    return { state: rest[0] ?? "?", ppid: Number(rest[1]), pgrp: Number(rest[2]), startTime: rest[19] ?? "" };
  } catch {
    return undefined;
  }
}

/** A process as the supervisor recognises it across pid reuse: its pid and its start time. */
export interface ProcId {
  pid: number;
  /** {@link ProcStat.startTime}. */
  start: string;
}

/** Every process `/proc` lists, by pid (zombies included: callers decide). Empty without `/proc`. */
export async function procTable(): Promise<Map<number, ProcStat>> {
  const table = new Map<number, ProcStat>();
  if (!hasProc) return table;
  const pids = (await readdir("/proc").catch(() => [] as string[])).filter((name) => /^\d+$/.test(name)).map(Number);
  await Promise.all(
    pids.map(async (pid) => {
      const stat = await procStat(pid);
      if (stat) table.set(pid, stat);
    }),
  );
  return table;
}

/** True for a process that has exited but is not reaped yet (it can no longer do anything). */
export function isZombie(stat: ProcStat): boolean {
  return stat.state === "Z" || stat.state === "X";
}

/** The live (not zombie) processes of process group `pgid`, by scanning `/proc`. Empty without `/proc`. */
export async function groupMembers(pgid: number): Promise<number[]> {
  const out: number[] = [];
  for (const [pid, stat] of await procTable()) if (stat.pgrp === pgid && !isZombie(stat)) out.push(pid);
  return out.sort((a, b) => a - b);
}

/**
 * The live processes whose environment holds `name=<value>` for one of `values`, by value. Reads
 * `/proc/<pid>/environ`, the environment a process was started with: readable for the agent's own
 * user's processes (every process as root). Empty without `/proc`.
 */
export async function processesWithEnv(name: string, values: ReadonlySet<string>): Promise<Map<string, ProcId[]>> {
  const found = new Map<string, ProcId[]>();
  if (!hasProc || values.size === 0) return found;
  const prefix = `${name}=`;
  await Promise.all(
    [...(await procTable())].map(async ([pid, stat]) => {
      if (isZombie(stat) || pid === process.pid) return;
      const environ = await readFile(`/proc/${pid}/environ`, "latin1").catch(() => "");
      for (const entry of environ.split("\0")) {
        if (!entry.startsWith(prefix)) continue;
        const value = entry.slice(prefix.length);
        if (values.has(value)) found.set(value, [...(found.get(value) ?? []), { pid, start: stat.startTime }]);
      }
    }),
  );
  return found;
}

/** Resident memory of `pid` in bytes (`VmRSS`), or `undefined`. */
export async function residentBytes(pid: number): Promise<number | undefined> {
  try {
    const match = /^VmRSS:\s+(\d+)\s+kB/m.exec(await readFile(`/proc/${pid}/status`, "utf8"));
    return match ? Number(match[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Whether one of `pids` holds a TCP socket listening on `port` (any address, IPv4 or IPv6).
 * Unlike connecting to the port, this tells two processes sharing it (`SO_REUSEPORT`) apart.
 */
export async function listensOn(pids: readonly number[], port: number): Promise<boolean> {
  const listening = new Set<string>();
  for (const table of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    const text = await readFile(table, "utf8").catch(() => "");
    for (const line of text.split("\n").slice(1)) {
      const cols = line.trim().split(/\s+/);
      // cols: sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
      const local = cols[1];
      if (!local || cols[3] !== "0A") continue; // 0A = LISTEN
      if (Number.parseInt(local.slice(local.lastIndexOf(":") + 1), 16) === port && cols[9]) listening.add(cols[9]);
    }
  }
  if (listening.size === 0) return false;
  for (const pid of pids) {
    const fds = await readdir(`/proc/${pid}/fd`).catch(() => [] as string[]);
    for (const fd of fds) {
      const target = await readlink(`/proc/${pid}/fd/${fd}`).catch(() => "");
      const inode = /^socket:\[(\d+)\]$/.exec(target)?.[1];
      if (inode && listening.has(inode)) return true;
    }
  }
  return false;
}
