/**
 * Per-key serialisation: tasks for one key run one at a time in call order, tasks for different
 * keys never wait for each other. Shared by the workspaces (one app's directories), the default
 * runtime (one app's lifecycle) and the state journal (its appends).
 */

/** Runs tasks one at a time per key; a failed task does not stop the ones queued after it. */
export class SerialQueues {
  readonly #queues = new Map<string, Promise<unknown>>();

  /** Runs `task` once every earlier task of `key` settled; settles as `task` does. Idle keys hold no memory. */
  run<T>(key: string, task: () => Promise<T>): Promise<T> {
    const run = (this.#queues.get(key) ?? Promise.resolve()).then(task, task);
    const tail = run.then(
      () => {},
      () => {},
    );
    this.#queues.set(key, tail);
    void tail.then(() => this.#queues.get(key) === tail && this.#queues.delete(key));
    return run;
  }
}
