/**
 * Small file system calls made synchronously, in slices. A promise-based call (`fs/promises`)
 * costs a trip through the runtime's thread pool, measured at 50-100 µs per call on Bun; the
 * call itself (a `stat`, a `link`, a `mkdir`) takes a few microseconds. On the paths a tick and
 * a hot reload take (snapshots, workspaces, module diffs) the agent makes them synchronously,
 * and a long series of them yields to the event loop every {@link SLICE} calls, so the apps
 * this process serves keep answering while a large tree is linked or walked.
 *
 * Reading or writing file contents stays asynchronous, except for small JSON files (a
 * `package.json`, a workspace marker): their cost grows with the file.
 */
import { readFileSync, realpathSync, statSync, type Stats } from "node:fs";
import { setImmediate as yieldToEventLoop } from "node:timers/promises";

/** How many synchronous calls run back to back before the event loop gets a turn. */
export const SLICE = 256;

/** Runs synchronous calls one after another, yielding to the event loop every {@link SLICE} of them. */
export type Slicer = <T>(call: () => T) => Promise<T>;

/** A new {@link Slicer}: one per series of calls (a walk, a copy), so the count is that series'. */
export function slicer(): Slicer {
  let calls = 0;
  return async (call) => {
    if (++calls % SLICE === 0) await yieldToEventLoop();
    return call();
  };
}

/** `statSync(path)`, or `undefined` when nothing is there (or it cannot be read). */
export function statIfAny(path: string): Stats | undefined {
  try {
    return statSync(path);
  } catch {
    return undefined;
  }
}

/** `realpathSync(path)`, or `undefined` when it does not resolve. */
export function realIfAny(path: string): string | undefined {
  try {
    return realpathSync(path);
  } catch {
    return undefined;
  }
}

/** The JSON object in the small file `file`, or `undefined` when it is missing, unreadable or not an object. */
export function readJsonSync(file: string): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(readFileSync(file, "utf8"));
    return typeof value === "object" && value !== null && !Array.isArray(value)
      ? (value as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
}
