/**
 * Temp entries that say who made them: `<prefix><pid>-<random>`, so a second process using the same
 * directory (a CLI next to the agent) never sweeps away work in progress, and leftovers of a
 * process that died are found and removed.
 */
import { randomBytes } from "node:crypto";
import { readdir, rm } from "node:fs/promises";
import { join } from "node:path";

/**
 * `<prefix><pid>-<random>`: temp entries carry their creator's pid, so that a second process using
 * the same directory (a CLI next to the agent) never sweeps away work in progress.
 */
export function tempName(prefix: string): string {
  return `${prefix}${process.pid}-${randomBytes(6).toString("hex")}`;
}

/** A temp entry whose creator is gone (or that has no readable pid); one of a live process is left alone. */
export function isAbandoned(name: string): boolean {
  const pid = Number(/^\.[a-z-]+?-(\d+)-[0-9a-f]+(?:\.index)?$/.exec(name)?.[1]);
  if (!Number.isSafeInteger(pid) || pid <= 0) return true;
  try {
    process.kill(pid, 0);
    return false;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "ESRCH";
  }
}

/** Removes every entry of `parent` whose name starts with one of `prefixes` and whose creator is gone. */
export async function sweepAbandoned(parent: string, prefixes: readonly string[]): Promise<void> {
  const names = await readdir(parent).catch(() => [] as string[]);
  for (const name of names) {
    if (prefixes.some((prefix) => name.startsWith(prefix)) && isAbandoned(name))
      await rm(join(parent, name), { recursive: true, force: true });
  }
}
