/**
 * The dependency graph of a plan (SPEC section 4's order): which desired apps cannot be applied
 * (missing dependencies, cycles, each cycle named by its shortest path), and sequencing names so
 * every app comes after the apps it depends on, ties by name. Pure functions over app names;
 * `order()` in plan.ts turns them into the ordered plan.
 */
import type { AppSpec } from "./spec.ts";

/** The part of a desired state the graph reads: each app's `depends_on`, and the apps whose spec file is broken (`DesiredState` fits). */
export interface DependencyGraph {
  apps: Readonly<Record<string, { spec: Pick<AppSpec, "depends_on"> }>>;
  invalid: ReadonlySet<string>;
}

/**
 * Per desired app, why it cannot be applied: missing dependencies and dependency cycles. A dependency
 * is known when the repo has it, valid or invalid (an invalid one keeps running as it is, or keeps the
 * dependent pending); a running app the repo dropped is being removed, so it does not count.
 */
export function graphProblems(desired: DependencyGraph): Map<string, string[]> {
  // Nothing depends on anything (most repositories): no missing dependency, no cycle.
  if (!hasDependencies(desired)) return new Map();
  // The same graph as last time (most ticks): the same answer, without sorting every app again.
  if (last && sameGraph(last, desired)) return new Map(last.problems);
  const problems = computeProblems(desired);
  last = {
    // Copies: a list changed in place must not look like the one remembered.
    deps: new Map(Object.keys(desired.apps).map((app) => [app, [...dependsOn(desired, app)]])),
    invalid: new Set(desired.invalid),
    problems: new Map(problems),
  };
  return problems;
}

/** The graph {@link graphProblems} answered last, and its answer. */
let last:
  { deps: Map<string, readonly string[]>; invalid: ReadonlySet<string>; problems: Map<string, string[]> } | undefined;

const NONE: readonly string[] = [];
const dependsOn = (desired: DependencyGraph, app: string): readonly string[] =>
  own(desired.apps, app)?.spec.depends_on ?? NONE;

function hasDependencies(desired: DependencyGraph): boolean {
  for (const app in desired.apps) if (dependsOn(desired, app).length > 0) return true;
  return false;
}

function sameGraph(before: NonNullable<typeof last>, desired: DependencyGraph): boolean {
  if (before.invalid.size !== desired.invalid.size || [...desired.invalid].some((app) => !before.invalid.has(app)))
    return false;
  let count = 0;
  for (const app in desired.apps) {
    if (!Object.hasOwn(desired.apps, app)) continue;
    count++;
    const was = before.deps.get(app);
    const now = dependsOn(desired, app);
    if (was === undefined || (was !== now && (was.length !== now.length || was.some((d, i) => d !== now[i]))))
      return false;
  }
  return count === before.deps.size;
}

/**
 * The apps in `roots` and every app they depend on, transitively (`deps`), each once: what must be
 * ordered to order `roots`.
 */
export function dependencyClosure(roots: readonly string[], deps: (app: string) => readonly string[]): string[] {
  const seen = new Set<string>();
  const stack = [...roots];
  while (stack.length > 0) {
    const app = stack.pop()!;
    if (seen.has(app)) continue;
    seen.add(app);
    stack.push(...deps(app));
  }
  return [...seen];
}

function computeProblems(desired: DependencyGraph): Map<string, string[]> {
  const problems = new Map<string, string[]>();
  const add = (app: string, message: string) => problems.set(app, [...(problems.get(app) ?? []), message]);
  const names = Object.keys(desired.apps).sort(byName);
  const depsOf = (app: string): string[] => [...(own(desired.apps, app)?.spec.depends_on ?? [])].sort(byName);

  for (const app of names) {
    for (const dep of depsOf(app)) {
      if (!own(desired.apps, dep) && !desired.invalid.has(dep))
        add(app, `depends on "${dep}", which is not in the repository`);
    }
  }

  // Peel off apps whose dependencies all resolve; what is left is on a cycle or depends on one.
  const placed = new Set(topo(names, depsOf, false));
  const tangled = names.filter((app) => !placed.has(app));
  const tangledSet = new Set(tangled);
  for (const app of tangled) {
    const cycle = shortestCycle(app, (n) => depsOf(n).filter((d) => tangledSet.has(d)));
    if (cycle) add(app, `dependency cycle: ${[...cycle, cycle[0]].join(" -> ")}`);
  }
  return problems;
}

/** The shortest dependency path from `start` back to itself (neighbours by name), rotated to begin at its smallest name. */
export function shortestCycle(start: string, next: (app: string) => string[]): string[] | undefined {
  const parent = new Map<string, string>();
  const queue = [start];
  for (let i = 0; i < queue.length; i++) {
    const at = queue[i] as string;
    for (const dep of next(at)) {
      if (dep === start) {
        const path = [at];
        while (path[0] !== start) path.unshift(parent.get(path[0] as string) as string);
        const min = path.reduce((a, b) => (byName(a, b) <= 0 ? a : b));
        const i0 = path.indexOf(min);
        return [...path.slice(i0), ...path.slice(0, i0)];
      }
      if (!parent.has(dep)) {
        parent.set(dep, at);
        queue.push(dep);
      }
    }
  }
  return undefined;
}

/**
 * Kahn's topological sort: each node after every node `before(node)` names (restricted to `nodes`),
 * ties by name. When stuck on a cycle it either breaks it at the smallest name (`breakCycles`) or
 * stops, returning only the nodes it could place.
 */
export function topo(
  nodes: readonly string[],
  before: (node: string) => readonly string[],
  breakCycles = true,
): string[] {
  const set = new Set(nodes);
  const waitingFor = new Map<string, number>();
  const after = new Map<string, string[]>();
  for (const node of set) {
    const prereqs = [...new Set(before(node))].filter((p) => set.has(p) && p !== node);
    waitingFor.set(node, prereqs.length);
    for (const p of prereqs) after.set(p, [...(after.get(p) ?? []), node]);
  }
  const out: string[] = [];
  const done = new Set<string>();
  // Nodes free to go, sorted by name from `head` on (an insertion keeps the order: no re-sort).
  const ready = [...set].filter((n) => waitingFor.get(n) === 0).sort(byName);
  let head = 0;
  const enqueue = (name: string) => {
    let lo = head;
    let hi = ready.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (byName(ready[mid]!, name) <= 0) lo = mid + 1;
      else hi = mid;
    }
    ready.splice(lo, 0, name);
  };
  while (out.length < set.size) {
    let node = head < ready.length ? ready[head++] : undefined;
    if (node === undefined) {
      if (!breakCycles) break;
      node = [...set].filter((n) => !done.has(n)).sort(byName)[0] as string;
    }
    if (done.has(node)) continue;
    done.add(node);
    out.push(node);
    for (const next of after.get(node) ?? []) {
      const left = (waitingFor.get(next) ?? 0) - 1;
      waitingFor.set(next, left);
      if (left === 0 && !done.has(next)) enqueue(next);
    }
  }
  return out;
}

/** Each name's position in `sequence`. */
export function rankOf(sequence: readonly string[]): Map<string, number> {
  return new Map(sequence.map((name, i) => [name, i]));
}

/** Stable sort by rank; apps without a rank go last, by name. */
export function sortBy<T extends { app: string }>(actions: readonly T[], rank: ReadonlyMap<string, number>): T[] {
  const key = (a: T) => rank.get(a.app) ?? Number.MAX_SAFE_INTEGER;
  return actions
    .map((action, i) => ({ action, i }))
    .sort((x, y) => key(x.action) - key(y.action) || byName(x.action.app, y.action.app) || x.i - y.i)
    .map((x) => x.action);
}

/** Names in code-unit order: the tie-break of every order the planner makes (locale-independent). */
export function byName(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Own-property lookup: app names like "constructor" must not find Object.prototype members. */
function own<T>(record: Readonly<Record<string, T>>, key: string): T | undefined {
  return Object.hasOwn(record, key) ? record[key] : undefined;
}
