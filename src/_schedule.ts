/**
 * Which planned actions may run at the same time (SPEC section 4's order, as a graph), and running
 * them with a bound. `order()` gives a sequence; here each action waits only for the earlier
 * actions the rules put before it: a removal for the removals of the apps that depend on it, any
 * other action for the actions of its dependencies (through dependencies that have no action in
 * this plan). Everything else may overlap, up to `apply_concurrency` at once, taken in plan order.
 * Waiting for an action to finish is all this does: whether a dependency is then running and
 * healthy is still checked by the applier when the dependent starts.
 */
import type { Action, CurrentState, DesiredState } from "./plan.ts";

/**
 * Runs a plan's actions (as `order()` returns them) with `run`: the removals first, then the rest,
 * each once the actions it waits for settled, at most `limit` at once. Removals follow the running
 * apps' own `depends_on`, the rest the desired specs' (as `order()` does). Returns the results in
 * plan order; once `signal` is aborted nothing new starts, and actions never started have none.
 */
export async function runPlan<T>(
  actions: readonly Action[],
  desired: DesiredState,
  current: CurrentState,
  run: (action: Action) => Promise<T>,
  { limit, signal }: { limit: number; signal?: AbortSignal | undefined },
): Promise<T[]> {
  const removes = actions.filter((a): a is Extract<Action, { type: "remove" }> => a.type === "remove");
  const starts = actions.filter((a) => a.type !== "remove");
  const running = new Map(removes.map((a) => [a.app, a.from.depends_on]));
  const wanted = new Map(starts.map((a) => [a.app, "spec" in a ? a.spec.depends_on : []]));
  const wants = (app: string): readonly string[] =>
    (Object.hasOwn(desired.apps, app) ? desired.apps[app]?.spec.depends_on : undefined) ??
    wanted.get(app) ??
    (Object.hasOwn(current, app) ? current[app]?.spec.depends_on : undefined) ??
    [];
  const out: T[] = [];
  const batches: Array<[readonly Action[], number[][]]> = [
    [removes, removalPrerequisites(removes, (app) => running.get(app) ?? [])],
    [starts, startPrerequisites(starts, wants)],
  ];
  for (const [batch, after] of batches) {
    if (signal?.aborted) break;
    const results = await runScheduled(after, limit, (i) => run(batch[i]!), signal);
    for (const result of results) if (result !== undefined) out.push(result);
  }
  return out;
}

/**
 * For each removal (in plan order), the earlier removals it waits for: those of the apps whose
 * running spec depends on it (`dependsOn`), so dependents stop before what they use.
 */
export function removalPrerequisites(
  removes: readonly Action[],
  dependsOn: (app: string) => readonly string[],
): number[][] {
  return removes.map((action, i) => {
    const out: number[] = [];
    for (let j = 0; j < i; j++) if (dependsOn(removes[j]!.app).includes(action.app)) out.push(j);
    return out;
  });
}

/**
 * For each non-removal action (in plan order, dependencies first), the earlier actions it waits
 * for: the nearest actions among its dependencies (`dependsOn`, the desired specs), looking
 * through dependencies that have no action of their own, and an earlier action of the same app.
 * An app on a cycle of dependencies without actions is looked through once.
 */
export function startPrerequisites(
  actions: readonly Action[],
  dependsOn: (app: string) => readonly string[],
): number[][] {
  const indexOf = new Map<string, number>();
  const hasAction = new Set(actions.map((a) => a.app));
  return actions.map((action, i) => {
    const waits = new Set<number>();
    const same = indexOf.get(action.app);
    if (same !== undefined) waits.add(same);
    // Breadth-first through the dependencies, stopping at each app that has an action.
    const seen = new Set([action.app]);
    const queue = [...dependsOn(action.app)];
    for (let k = 0; k < queue.length; k++) {
      const app = queue[k]!;
      if (seen.has(app)) continue;
      seen.add(app);
      if (!hasAction.has(app)) queue.push(...dependsOn(app));
      const j = indexOf.get(app);
      // Only earlier actions: an action never waits for one after it, so the schedule cannot deadlock.
      if (j !== undefined) waits.add(j);
    }
    indexOf.set(action.app, i);
    return [...waits].sort((a, b) => a - b);
  });
}

/**
 * Runs `run(i)` for every index of `prerequisites`, each once all of its prerequisites settled, at
 * most `limit` at once, starting ready ones in index order. Once `signal` is aborted or a run
 * throws, nothing new starts; the runs under way are awaited. Resolves with each run's result
 * (`undefined` for the ones never started), or rejects with the first error thrown.
 */
export function runScheduled<T>(
  prerequisites: readonly (readonly number[])[],
  limit: number,
  run: (index: number) => Promise<T>,
  signal?: AbortSignal,
): Promise<Array<T | undefined>> {
  const count = prerequisites.length;
  const results = new Array<T | undefined>(count);
  const waiting = prerequisites.map((p) => new Set(p).size);
  const dependents: number[][] = prerequisites.map(() => []);
  prerequisites.forEach((p, i) => new Set(p).forEach((j) => dependents[j]!.push(i)));
  // Ready indices, kept sorted so the plan's order decides among them.
  const ready = waiting.flatMap((n, i) => (n === 0 ? [i] : []));
  let running = 0;
  let failure: { error: unknown } | undefined;
  return new Promise((resolve, reject) => {
    const pump = (): void => {
      while (running < Math.max(1, limit) && ready.length > 0 && !failure && !signal?.aborted) {
        const i = ready.shift()!;
        running++;
        // A run that throws synchronously is a failure like a rejected one.
        void Promise.resolve()
          .then(() => run(i))
          .then(
            (value) => {
              results[i] = value;
            },
            (error: unknown) => {
              failure ??= { error };
            },
          )
          .finally(() => {
            running--;
            for (const next of dependents[i]!) if (--waiting[next]! === 0) insertSorted(ready, next);
            pump();
          });
      }
      if (running === 0) {
        if (failure) reject(failure.error);
        else resolve(results);
      }
    };
    if (count === 0) resolve(results);
    else pump();
  });
}

function insertSorted(list: number[], value: number): void {
  let at = list.length;
  while (at > 0 && list[at - 1]! > value) at--;
  list.splice(at, 0, value);
}
