/**
 * An append-only log file with size-based rotation (`app.log` -> `app.log.1` -> … -> `app.log.N`,
 * the oldest deleted), written in the background so a slow disk never blocks the caller: writes
 * are queued, and {@link RotatingLog.write} says when the queue is full so the caller can pause
 * its source (a child's pipe) instead of buffering without bound.
 */
import { Buffer } from "node:buffer";
import { mkdirSync } from "node:fs";
import { open, rename, rm, type FileHandle } from "node:fs/promises";
import { dirname, join } from "node:path";
import { messageOf } from "./errors.ts";

/** Options of {@link RotatingLog}. */
export interface RotatingLogOptions {
  path: string;
  /** Rotate before the file would grow past this many bytes (default 10 MiB). */
  maxBytes?: number;
  /** Rotated files kept (`path.1` newest … `path.<keep>` oldest; default 3; 0 = none). */
  keep?: number;
  /** Queued bytes past which {@link RotatingLog.write} returns false (default 1 MiB). */
  maxQueuedBytes?: number;
  /** Told once when the file cannot be written; later writes are dropped. */
  onError?: (message: string) => void;
}

/** Default size at which a log file is rotated. */
export const DEFAULT_LOG_MAX_BYTES = 10 * 1024 * 1024;
/** Default number of rotated files kept. */
export const DEFAULT_LOG_KEEP = 3;

/** Where a process app's output is written: `<local_path>/logs/<app>.log` (rotated to `.1`, `.2`, …). */
export function appLogPath(localPath: string, app: string): string {
  return join(localPath, "logs", `${app}.log`);
}

/** One rotating log file. Opened on the first write; the directory is created then. */
export class RotatingLog {
  readonly path: string;
  readonly #maxBytes: number;
  readonly #keep: number;
  readonly #maxQueued: number;
  readonly #onError: (message: string) => void;
  #queue: Buffer[] = [];
  #queued = 0;
  #pumping: Promise<void> | undefined;
  #handle: FileHandle | undefined;
  #size = 0;
  #broken = false;
  #closed = false;
  #waiters: (() => void)[] = [];

  constructor(options: RotatingLogOptions) {
    this.path = options.path;
    this.#maxBytes = Math.max(1, options.maxBytes ?? DEFAULT_LOG_MAX_BYTES);
    this.#keep = Math.max(0, options.keep ?? DEFAULT_LOG_KEEP);
    this.#maxQueued = options.maxQueuedBytes ?? 1024 * 1024;
    this.#onError = options.onError ?? (() => {});
  }

  /**
   * Queues `text` for the file (write whole lines: rotation happens between writes). Returns false
   * when more than `maxQueuedBytes` are waiting: pause the source until {@link drained}. Never
   * throws; after a close or a write error the text is dropped.
   */
  write(text: string): boolean {
    if (this.#closed || this.#broken || text === "") return true;
    const bytes = Buffer.from(text);
    this.#queue.push(bytes);
    this.#queued += bytes.length;
    this.#pumping ??= this.#pump();
    return this.#queued <= this.#maxQueued;
  }

  /** Resolves once everything queued so far is written (or dropped). */
  drained(): Promise<void> {
    if (!this.#pumping) return Promise.resolve();
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  /** Writes what is queued, then closes the file. Later writes are dropped. Idempotent. */
  async close(): Promise<void> {
    this.#closed = true;
    await this.drained();
    const handle = this.#handle;
    this.#handle = undefined;
    await handle?.close().catch(() => {});
  }

  async #pump(): Promise<void> {
    try {
      while (this.#queue.length > 0) {
        if (!this.#handle) await this.#open();
        // Batch what fits in the current file; rotate between writes, never inside one.
        const batch: Buffer[] = [];
        let bytes = 0;
        while (this.#queue.length > 0) {
          let next = this.#queue[0]!;
          const room = this.#maxBytes - this.#size - bytes;
          if (next.length > room) {
            // Take the whole lines that still fit; the rest goes to the next file.
            const cut = room > 0 ? next.lastIndexOf(0x0a, room - 1) + 1 : 0;
            if (cut > 0) {
              this.#queue[0] = next.subarray(cut);
              next = next.subarray(0, cut);
            } else if (bytes > 0 || this.#size > 0) {
              break;
            } else {
              this.#queue.shift(); // a line longer than a whole file gets a file of its own
            }
          } else {
            this.#queue.shift();
          }
          batch.push(next);
          bytes += next.length;
          this.#queued -= next.length;
        }
        if (batch.length === 0) {
          await this.#rotate();
          continue;
        }
        await this.#handle!.write(Buffer.concat(batch, bytes));
        this.#size += bytes;
      }
    } catch (error) {
      this.#broken = true;
      this.#queue = [];
      this.#queued = 0;
      this.#onError(`cannot write ${this.path}: ${messageOf(error)}; its output is no longer written there`);
    } finally {
      this.#pumping = undefined;
      for (const resolve of this.#waiters.splice(0)) resolve();
    }
  }

  async #open(): Promise<void> {
    mkdirSync(dirname(this.path), { recursive: true }); // synchronous: see _fs-sync.ts
    this.#handle = await open(this.path, "a");
    this.#size = (await this.#handle.stat()).size;
  }

  async #rotate(): Promise<void> {
    await this.#handle?.close();
    this.#handle = undefined;
    if (this.#keep === 0) {
      await rm(this.path, { force: true });
    } else {
      await rm(`${this.path}.${this.#keep}`, { force: true });
      for (let i = this.#keep - 1; i >= 1; i--) await renameIfExists(`${this.path}.${i}`, `${this.path}.${i + 1}`);
      await renameIfExists(this.path, `${this.path}.1`);
    }
    await this.#open();
  }
}

async function renameIfExists(from: string, to: string): Promise<void> {
  try {
    await rename(from, to);
  } catch (error) {
    if ((error as { code?: unknown }).code !== "ENOENT") throw error;
  }
}
