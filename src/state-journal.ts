/**
 * The state journal: each action a tick completes, appended to `<local_path>/state.journal` as
 * one JSON line the moment it completes, because state.json is rewritten (and flushed) only once
 * per tick. An agent killed mid-tick replays the journal over state.json at its next start, so it
 * neither repeats a finished upgrade nor reverts to the version it replaced.
 *
 * Appends are plain writes, not flushed to the device: they survive the agent being killed (the
 * kernel holds them), not a power loss, which can cost the actions since the last state.json.
 * Actions that complete at the same time (a tick applies independent apps concurrently) are
 * written one after another, in the order they were recorded: each line whole, and the last line
 * of an app the one replayed.
 */
import { appendFile, readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import type { Logger } from "./logger.ts";
import { splitSecrets } from "./secrets/secrets-file.ts";
import { SerialQueues } from "./_serial.ts";
import { AppSpec } from "./spec.ts";
import type { DeployedApp, DurableState } from "./state.ts";

/** One line of the journal: the app's entry after the action, or `null` when it was removed. */
interface JournalLine {
  app: string;
  entry: DeployedApp | null;
}

/** The journal file of a local path. */
export function journalPath(localPath: string): string {
  return join(localPath, "state.journal");
}

/** Appends completed actions; cleared once state.json holds them. */
export class StateJournal {
  readonly #file: string;
  readonly #append: (file: string, text: string) => Promise<void>;
  #dirty = false;
  /** The records waiting for the next write, and that write. */
  #batch: { lines: string[]; written: Promise<void> } | undefined;
  /** Each write starts once the one before it settled. */
  readonly #writes = new SerialQueues();

  /** `append` writes text at the end of the file (default `appendFile`, mode 0600; tests count writes through it). */
  constructor(file: string, options: { append?: (file: string, text: string) => Promise<void> } = {}) {
    this.#file = file;
    this.#append = options.append ?? ((path, text) => appendFile(path, text, { mode: 0o600 }));
  }

  /**
   * Records `app`'s entry after an action (`undefined`: the app was removed); after every earlier
   * record. Records made while a write is in flight go out together in the next write (a first
   * tick of 1000 apps: a few appends, not 1000), each line whole and in order.
   */
  record(app: string, entry: DeployedApp | undefined): Promise<void> {
    const line: JournalLine = { app, entry: entry ?? null };
    const text = `${JSON.stringify(line)}\n`;
    let batch = this.#batch;
    if (!batch) {
      const lines: string[] = [];
      const written = this.#serial(async () => {
        if (this.#batch?.lines === lines) this.#batch = undefined; // later records start the next batch
        await this.#append(this.#file, lines.join(""));
        this.#dirty = true;
      });
      batch = this.#batch = { lines, written };
    }
    batch.lines.push(text);
    return batch.written;
  }

  /** Empties the journal (state.json was just written with everything in it), once the records before it are written. */
  clear(): Promise<void> {
    this.#batch = undefined; // records from now on are written after the clear
    return this.#serial(async () => {
      if (!this.#dirty) return;
      await rm(this.#file, { force: true });
      this.#dirty = false;
    });
  }

  #serial(write: () => Promise<void>): Promise<void> {
    return this.#writes.run(this.#file, write);
  }

  /**
   * Applies a journal left by an agent that stopped mid-tick to `state` (read from state.json) and
   * returns how many actions it replayed. A torn last line (killed while writing) and entries whose
   * spec no longer validates are skipped with a warning; the file is kept until {@link clear}.
   */
  async replay(state: DurableState, logger: Logger): Promise<number> {
    let text: string;
    try {
      text = await readFile(this.#file, "utf8");
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return 0;
      logger.warn(`cannot read ${this.#file}: ${(error as Error).message}; the last tick's actions may be repeated`);
      return 0;
    }
    let replayed = 0;
    for (const raw of text.split("\n")) {
      if (raw.trim() === "") continue;
      const line = parseLine(raw);
      if (!line) {
        logger.warn(`${this.#file}: skipping an unreadable line (an agent killed while writing it?)`);
        continue;
      }
      if (line.entry === null) delete state.apps[line.app];
      else {
        const remembered = splitSecrets(line.entry.spec);
        const spec = AppSpec.safeParse(remembered.spec);
        if (spec.success && remembered.secrets) (spec.data as AppSpec).secrets = remembered.secrets;
        if (!spec.success || spec.data.name !== line.app) {
          logger.warn(`${this.#file}: skipping the entry of "${line.app}": its spec no longer validates`);
          continue;
        }
        state.apps[line.app] = { ...line.entry, spec: spec.data };
      }
      replayed++;
    }
    this.#dirty = true;
    return replayed;
  }
}

function parseLine(raw: string): JournalLine | undefined {
  try {
    const value = JSON.parse(raw) as Partial<JournalLine>;
    if (typeof value.app !== "string" || value.app === "" || value.entry === undefined) return undefined;
    if (value.entry !== null && (typeof value.entry !== "object" || Array.isArray(value.entry))) return undefined;
    return value as JournalLine;
  } catch {
    return undefined;
  }
}
