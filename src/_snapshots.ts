/**
 * The snapshots directory of a git source: one complete, read-only checkout per commit at
 * `<dir>/<commit>/`, each written into a temp directory and renamed into place, so a reader never
 * sees a half-written one. What fills a snapshot (git) is the caller's; this module owns the
 * directory, its temp entries and their clean-up.
 */
import { mkdirSync, renameSync, rmSync } from "node:fs";
import { readdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { isAbandoned, sweepAbandoned, tempName } from "./_temp.ts";
import { isDir } from "./_tree.ts";

/** Temp entries of snapshots being written: `.tmp-<pid>-<random>` and its `.index` file. */
const TEMP = ".tmp-";

/**
 * The snapshots of one git source, under `dir`. The owner serialises the calls and passes only
 * full commit ids (checked against `FULL_SHA`), so a name never leaves the directory.
 */
export class Snapshots {
  /** The snapshots directory, absolute. */
  readonly dir: string;

  constructor(dir: string) {
    this.dir = dir;
  }

  /** Where the snapshot of `commit` is (or will be). */
  pathOf(commit: string): string {
    return join(this.dir, commit);
  }

  /**
   * Writes the snapshot of `commit`: `fill` gets a fresh temp directory to write the tree into and
   * the path of a scratch file (git's index) next to it; the directory is then renamed into place.
   * Both are removed afterwards, whatever happened. A snapshot that appeared meanwhile is kept.
   */
  async create(commit: string, fill: (tree: string, scratch: string) => Promise<unknown>): Promise<void> {
    const target = this.pathOf(commit);
    const tmp = join(this.dir, tempName(TEMP));
    const index = `${tmp}.index`;
    // Synchronous calls where they are single and small (see _fs-sync.ts).
    let placed = false;
    try {
      mkdirSync(tmp);
      await fill(tmp, index);
      try {
        renameSync(tmp, target);
        placed = true;
      } catch (error) {
        if (!(await isDir(target))) throw error;
      }
    } finally {
      if (!placed) await rm(tmp, { recursive: true, force: true });
      rmSync(index, { force: true });
    }
  }

  /** Removes every snapshot (and abandoned temp entry) whose commit is not in `keep`. */
  async prune(keep: readonly string[]): Promise<void> {
    const wanted = new Set(keep);
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch {
      return;
    }
    for (const name of names) {
      // A sparse snapshot is named `<commit>-<paths digest>`: kept with its commit.
      if (wanted.has(name.split("-")[0]!) || (name.startsWith(TEMP) && !isAbandoned(name))) continue;
      await rm(join(this.dir, name), { recursive: true, force: true });
    }
  }

  /** Removes the temp entries a crashed writer left behind. */
  async sweep(): Promise<void> {
    await sweepAbandoned(this.dir, [TEMP]);
  }
}
