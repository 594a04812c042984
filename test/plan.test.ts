import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { AppSpec } from "../src/spec.ts";
import type { AppSpecInput } from "../src/spec.ts";
import type { AppHealth, AppStatus } from "../src/runtime.ts";
import { order, pendingReason, plan, waitingOn } from "../src/plan.ts";
import type { Action, CurrentApp, CurrentState, DesiredApp, DesiredState } from "../src/plan.ts";

/** A parsed spec: version 1.0.0 unless `extra` says otherwise. */
function spec(name: string, extra: Partial<AppSpecInput> = {}): AppSpec {
  return AppSpec.parse({ name, version: "1.0.0", ...extra });
}

function want(s: AppSpec, revision?: string): DesiredApp {
  return revision === undefined ? { spec: s } : { spec: s, revision };
}

function running(s: AppSpec, more: { status?: AppStatus; health?: AppHealth; revision?: string } = {}): CurrentApp {
  const app: CurrentApp = { spec: s, status: more.status ?? "running", health: more.health ?? "healthy" };
  return more.revision === undefined ? app : { ...app, revision: more.revision };
}

function desiredOf(apps: DesiredApp[], invalid: string[] = []): DesiredState {
  return { apps: Object.fromEntries(apps.map((a) => [a.spec.name, a])), invalid: new Set(invalid) };
}

function currentOf(apps: CurrentApp[]): CurrentState {
  return Object.fromEntries(apps.map((a) => [a.spec.name, a]));
}

/** Freezes every object and array reachable from `value`, so a write anywhere throws (ES modules are strict). */
function deepFreeze<T>(value: T): T {
  if (typeof value === "object" && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    if (value instanceof Set) for (const v of value) deepFreeze(v);
    else for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}

/** The actions reduced to what a reader checks: type, app and the type's distinguishing detail. */
function summary(actions: readonly Action[]): string[] {
  return actions.map((a) => {
    switch (a.type) {
      case "upgrade":
      case "restart":
        return `${a.type} ${a.app}: ${a.reason}`;
      case "reconfigure":
        return `reconfigure ${a.app}: changed=${a.changed.join(",")} added=${a.added.join(",")} removed=${a.removed.join(",")}`;
      case "hot_reload":
        return `hot_reload ${a.app}: ${a.fromRevision} -> ${a.toRevision}`;
      default:
        return `${a.type} ${a.app}`;
    }
  });
}

const web = spec("web", { env: { port: 8080, pool_size: 10 } });
const gitWeb = spec("web", { source: { type: "git", url: "https://example.com/web.git", ref: "main" } });

interface PlanCase {
  name: string;
  desired: DesiredState;
  current: CurrentState;
  expect: string[];
}

const planCases: PlanCase[] = [
  {
    name: "an app in the repo that does not run is deployed",
    desired: desiredOf([want(web)]),
    current: {},
    expect: ["deploy web"],
  },
  {
    name: "an app that runs but left the repo is removed",
    desired: desiredOf([]),
    current: currentOf([running(web)]),
    expect: ["remove web"],
  },
  {
    name: "an app whose spec is broken is never removed, even though it is not among the desired apps",
    desired: desiredOf([], ["web"]),
    current: currentOf([running(web)]),
    expect: [],
  },
  {
    name: "an app whose spec is broken is not restarted when it failed",
    desired: desiredOf([], ["web"]),
    current: currentOf([running(web, { status: "failed", health: "unhealthy" })]),
    expect: [],
  },
  {
    name: "an app whose spec is broken and that does not run gets no action",
    desired: desiredOf([], ["web"]),
    current: {},
    expect: [],
  },
  {
    name: "an app listed as broken gets no action even when a desired spec is also given for it",
    desired: desiredOf([want(spec("web", { version: "2.0.0" }))], ["web"]),
    current: currentOf([running(web)]),
    expect: [],
  },
  {
    name: "a version change is an upgrade whose reason shows both versions",
    desired: desiredOf([want(spec("web", { version: "1.1.0", env: web.env }))]),
    current: currentOf([running(web)]),
    expect: ["upgrade web: version 1.0.0 -> 1.1.0"],
  },
  {
    name: "a source change is an upgrade",
    desired: desiredOf([want(spec("web", { source: { type: "git", url: "https://example.com/web.git", ref: "v2" } }))]),
    current: currentOf([running(gitWeb)]),
    expect: ["upgrade web: source changed"],
  },
  {
    name: "an entry change is an upgrade",
    desired: desiredOf([want(spec("web", { entry: "src/b.ts" }))]),
    current: currentOf([running(spec("web", { entry: "src/a.ts" }))]),
    expect: ["upgrade web: entry changed"],
  },
  {
    name: "an isolation change is an upgrade",
    desired: desiredOf([want(spec("web", { isolation: "worker" }))]),
    current: currentOf([running(spec("web"))]),
    expect: ["upgrade web: isolation changed"],
  },
  {
    name: "a command change is an upgrade",
    desired: desiredOf([want(spec("web", { isolation: "process", command: ["node", "b.js"] }))]),
    current: currentOf([running(spec("web", { isolation: "process", command: ["node", "a.js"] }))]),
    expect: ["upgrade web: command changed"],
  },
  {
    name: "adding a memory limit is an upgrade",
    desired: desiredOf([want(spec("web", { isolation: "worker", limits: { memory_mb: 256 } }))]),
    current: currentOf([running(spec("web", { isolation: "worker" }))]),
    expect: ["upgrade web: limits changed"],
  },
  {
    name: "several code changes are all listed, the version first",
    desired: desiredOf([want(spec("web", { version: "2.0.0", isolation: "process", entry: "b.ts" }))]),
    current: currentOf([running(spec("web", { entry: "a.ts" }))]),
    expect: ["upgrade web: version 1.0.0 -> 2.0.0, entry changed, isolation changed"],
  },
  {
    name: "a code change together with an env change is an upgrade",
    desired: desiredOf([want(spec("web", { version: "2.0.0", env: { port: 9090 } }))]),
    current: currentOf([running(web)]),
    expect: ["upgrade web: version 1.0.0 -> 2.0.0"],
  },
  {
    name: "a source written in a different key order is not a change",
    desired: desiredOf([
      want(spec("web", { source: { ref: "main", url: "https://example.com/web.git", type: "git" } })),
    ]),
    current: currentOf([running(gitWeb)]),
    expect: [],
  },
  {
    name: "keys present with an undefined value are the same as absent keys (specs built by hand, not parsed)",
    desired: desiredOf([
      want({
        ...web,
        description: undefined,
        health: { ...web.health, module: undefined },
        env: { ...web.env, x: undefined },
      }),
    ]),
    current: currentOf([running(web)]),
    expect: [],
  },
  {
    name: "keys present with an undefined value in the running spec are the same as absent keys",
    desired: desiredOf([want(web)]),
    current: currentOf([
      running({
        ...web,
        description: undefined,
        health: { ...web.health, module: undefined },
        env: { ...web.env, x: undefined },
      }),
    ]),
    expect: [],
  },
  {
    name: "a changed env value is a reconfigure naming the key",
    desired: desiredOf([want(spec("web", { env: { port: 8080, pool_size: 20 } }))]),
    current: currentOf([running(web)]),
    expect: ["reconfigure web: changed=pool_size added= removed="],
  },
  {
    name: "added and removed env keys are named, each list sorted",
    desired: desiredOf([want(spec("web", { env: { port: 8080, z_flag: true, a_flag: false } }))]),
    current: currentOf([running(web)]),
    expect: ["reconfigure web: changed= added=a_flag,z_flag removed=pool_size"],
  },
  {
    name: "changing env.port also changes the default health port, and is still a reconfigure of the env",
    desired: desiredOf([want(spec("web", { env: { port: 9090, pool_size: 10 } }))]),
    current: currentOf([running(web)]),
    expect: ["reconfigure web: changed=port added= removed="],
  },
  {
    name: "env written in a different key order is not a change",
    desired: desiredOf([want(spec("web", { env: { pool_size: 10, port: 8080 } }))]),
    current: currentOf([running(web)]),
    expect: [],
  },
  {
    name: "nested env values compare deeply, ignoring key order",
    desired: desiredOf([want(spec("web", { env: { db: { port: 5432, host: "x" }, tags: ["a", "b"] } }))]),
    current: currentOf([running(spec("web", { env: { db: { host: "x", port: 5432 }, tags: ["a", "b"] } }))]),
    expect: [],
  },
  {
    name: "a change deep inside a nested env value names its top-level key",
    desired: desiredOf([want(spec("web", { env: { db: { host: "y", port: 5432 }, tags: ["b", "a"] } }))]),
    current: currentOf([running(spec("web", { env: { db: { host: "x", port: 5432 }, tags: ["a", "b"] } }))]),
    expect: ["reconfigure web: changed=db,tags added= removed="],
  },
  ...(
    [
      ["description", { description: "new" }],
      ["icon", { icon: { type: "url", value: "https://example.com/i.png" } }],
      ["health", { health: { type: "http", path: "/health" } }],
      ["depends_on", { depends_on: ["db"] }],
      ["reload_signal", { reload_signal: "SIGHUP" }],
    ] as const
  ).map(([field, extra]): PlanCase => ({
    name: `a ${field} change alone is a reconfigure with no env keys`,
    desired: desiredOf([want(spec("web", extra)), want(spec("db"))]),
    current: currentOf([running(spec("web")), running(spec("db"))]),
    expect: ["reconfigure web: changed= added= removed="],
  })),
  {
    name: "reordering depends_on is not a change",
    desired: desiredOf([want(spec("web", { depends_on: ["cache", "db"] })), want(spec("db")), want(spec("cache"))]),
    current: currentOf([
      running(spec("web", { depends_on: ["db", "cache"] })),
      running(spec("db")),
      running(spec("cache")),
    ]),
    expect: [],
  },
  {
    name: "a new revision with an unchanged spec is a hot reload",
    desired: desiredOf([want(gitWeb, "bbb")]),
    current: currentOf([running(gitWeb, { revision: "aaa" })]),
    expect: ["hot_reload web: aaa -> bbb"],
  },
  {
    name: "the same revision is nothing to do",
    desired: desiredOf([want(gitWeb, "aaa")]),
    current: currentOf([running(gitWeb, { revision: "aaa" })]),
    expect: [],
  },
  {
    name: "an unknown desired revision is not a hot reload",
    desired: desiredOf([want(gitWeb)]),
    current: currentOf([running(gitWeb, { revision: "aaa" })]),
    expect: [],
  },
  {
    name: "an unknown running revision is not a hot reload",
    desired: desiredOf([want(gitWeb, "bbb")]),
    current: currentOf([running(gitWeb)]),
    expect: [],
  },
  {
    name: "a new revision with an env change is an upgrade, not a hot reload",
    desired: desiredOf([want(spec("web", { env: { port: 9090 } }), "bbb")]),
    current: currentOf([running(spec("web", { env: { port: 8080 } }), { revision: "aaa" })]),
    expect: ["upgrade web: code and spec changed"],
  },
  {
    name: "a new revision with a description change is an upgrade, not a hot reload",
    desired: desiredOf([want(spec("web", { description: "b" }), "bbb")]),
    current: currentOf([running(spec("web", { description: "a" }), { revision: "aaa" })]),
    expect: ["upgrade web: code and spec changed"],
  },
  {
    name: "a new revision with a version change is an upgrade for the version",
    desired: desiredOf([want(spec("web", { version: "2.0.0" }), "bbb")]),
    current: currentOf([running(spec("web"), { revision: "aaa" })]),
    expect: ["upgrade web: version 1.0.0 -> 2.0.0"],
  },
  ...(["failed", "stopped"] as const).map((status): PlanCase => ({
    name: `an unchanged ${status} app is restarted`,
    desired: desiredOf([want(web)]),
    current: currentOf([running(web, { status, health: "unhealthy" })]),
    expect: [`restart web: status ${status}`],
  })),
  ...(["running", "starting", "upgrading", "pending"] as const).map((status): PlanCase => ({
    name: `an unchanged ${status} app gets no action`,
    desired: desiredOf([want(web)]),
    current: currentOf([running(web, { status, health: "unknown" })]),
    expect: [],
  })),
  {
    name: "a failed app whose env changed is reconfigured rather than merely restarted",
    desired: desiredOf([want(spec("web", { env: { port: 8080, pool_size: 11 } }))]),
    current: currentOf([running(web, { status: "failed", health: "unhealthy" })]),
    expect: ["reconfigure web: changed=pool_size added= removed="],
  },
  {
    name: "depends_on written as a YAML string, a list or Erlang-style maps is the same spec",
    desired: desiredOf([want(spec("web", { depends_on: "db" })), want(spec("db"))]),
    current: currentOf([
      running(spec("web", { depends_on: [{ name: "db" }] as unknown as string[] })),
      running(spec("db")),
    ]),
    expect: [],
  },
  {
    name: "app names that are Object.prototype members are ordinary apps",
    desired: desiredOf([want(spec("constructor")), want(spec("toString"))]),
    current: currentOf([running(spec("toString"), { status: "failed" }), running(spec("hasOwnProperty"))]),
    expect: ["deploy constructor", "remove hasOwnProperty", "restart toString: status failed"],
  },
  {
    name: "actions come out sorted by app name whatever their type",
    desired: desiredOf([want(spec("d")), want(spec("b", { version: "2" })), want(spec("c"))]),
    current: currentOf([
      running(spec("e")),
      running(spec("b")),
      running(spec("a")),
      running(spec("c"), { status: "failed" }),
    ]),
    expect: ["remove a", "upgrade b: version 1.0.0 -> 2", "restart c: status failed", "deploy d", "remove e"],
  },
];

describe("plan", () => {
  for (const c of planCases) {
    test(c.name, () => {
      assert.deepEqual(summary(plan(deepFreeze(c.desired), deepFreeze(c.current))), c.expect);
    });
  }

  test("actions carry the desired spec, the running spec and the desired revision", () => {
    const next = spec("web", { version: "2.0.0" });
    const [upgrade] = plan(desiredOf([want(next, "r2")]), currentOf([running(web, { revision: "r1" })]));
    assert.deepEqual(upgrade, {
      type: "upgrade",
      app: "web",
      spec: next,
      from: web,
      revision: "r2",
      reason: "version 1.0.0 -> 2.0.0",
    });
    assert.deepEqual(plan(desiredOf([want(web, "r1")]), {}), [
      { type: "deploy", app: "web", spec: web, revision: "r1" },
    ]);
    const [deploy] = plan(desiredOf([want(web)]), {});
    assert.ok(deploy && !("revision" in deploy), "no revision key when the revision is unknown");
    assert.deepEqual(plan(desiredOf([]), currentOf([running(web)])), [{ type: "remove", app: "web", from: web }]);
  });

  test("plan does not mutate its inputs", () => {
    const desired = desiredOf([want(spec("b", { env: { x: 1 } }), "r2"), want(spec("c"))], ["z"]);
    const current = currentOf([running(spec("b", { env: { x: 2 } }), { revision: "r1" }), running(spec("a"))]);
    const before = structuredClone({ desired, current });
    plan(deepFreeze(desired), deepFreeze(current));
    assert.deepEqual({ desired, current }, before);
  });
});

/** Runs plan then order on the same state. */
function planned(desired: DesiredState, current: CurrentState) {
  return order(plan(desired, current), desired, current);
}

interface OrderCase {
  name: string;
  desired: DesiredState;
  current: CurrentState;
  expect: string[];
  errors?: Record<string, string>;
}

const chain = Array.from({ length: 12 }, (_, i) => `app${String(i).padStart(2, "0")}`);

const orderCases: OrderCase[] = [
  {
    name: "removes come first, a dependent before its dependency, using the running apps' depends_on the repo no longer has",
    desired: desiredOf([want(spec("aaa"))]),
    current: currentOf([
      running(spec("b_db")),
      running(spec("a_web", { depends_on: ["b_db"] })),
      running(spec("z_db")),
      running(spec("y_web", { depends_on: ["z_db"] })),
    ]),
    expect: ["remove a_web", "remove b_db", "remove y_web", "remove z_db", "deploy aaa"],
  },
  {
    name: "a dependent is removed first even when its name sorts after its dependency",
    desired: desiredOf([]),
    current: currentOf([
      running(spec("a_db")),
      running(spec("m_api", { depends_on: ["a_db"] })),
      running(spec("z_web", { depends_on: ["m_api"] })),
    ]),
    expect: ["remove z_web", "remove m_api", "remove a_db"],
  },
  {
    name: "a dependent is deployed after its dependency even when its name sorts first",
    desired: desiredOf([want(spec("api", { depends_on: ["zdb"] })), want(spec("zdb"))]),
    current: {},
    expect: ["deploy zdb", "deploy api"],
  },
  {
    name: "a long chain deploys from its root up",
    desired: desiredOf(
      chain.map((n, i) => want(spec(n, i + 1 < chain.length ? { depends_on: [chain[i + 1] as string] } : {}))),
    ),
    current: {},
    expect: [...chain].reverse().map((n) => `deploy ${n}`),
  },
  {
    name: "a diamond deploys the base, then both sides by name, then the top",
    desired: desiredOf([
      want(spec("a_top", { depends_on: ["z_right", "b_left"] })),
      want(spec("b_left", { depends_on: ["y_base"] })),
      want(spec("z_right", { depends_on: ["y_base"] })),
      want(spec("y_base")),
    ]),
    current: {},
    expect: ["deploy y_base", "deploy b_left", "deploy z_right", "deploy a_top"],
  },
  {
    name: "an upgrade waits for an upgrade of its dependency, through an unchanged app in between",
    desired: desiredOf([
      want(spec("a", { version: "2", depends_on: ["b"] })),
      want(spec("b", { depends_on: ["c"] })),
      want(spec("c", { version: "2" })),
    ]),
    current: currentOf([
      running(spec("a", { depends_on: ["b"] })),
      running(spec("b", { depends_on: ["c"] })),
      running(spec("c")),
    ]),
    expect: ["upgrade c: version 1.0.0 -> 2", "upgrade a: version 1.0.0 -> 2"],
  },
  {
    name: "every member of a three-app cycle gets an error naming the cycle and its action is dropped",
    desired: desiredOf([
      want(spec("b", { depends_on: ["c"] })),
      want(spec("c", { depends_on: ["a"] })),
      want(spec("a", { depends_on: ["b"] })),
      want(spec("solo")),
    ]),
    current: {},
    expect: ["deploy solo"],
    errors: {
      a: "dependency cycle: a -> b -> c -> a",
      b: "dependency cycle: a -> b -> c -> a",
      c: "dependency cycle: a -> b -> c -> a",
    },
  },
  {
    name: "a two-app cycle is reported on both, even for apps with nothing to do",
    desired: desiredOf([want(spec("x", { depends_on: ["y"] })), want(spec("y", { depends_on: ["x"] }))]),
    current: currentOf([running(spec("x", { depends_on: ["y"] })), running(spec("y", { depends_on: ["x"] }))]),
    expect: [],
    errors: { x: "dependency cycle: x -> y -> x", y: "dependency cycle: x -> y -> x" },
  },
  {
    name: "an app that depends on a cycle member keeps its action and is not an error",
    desired: desiredOf([
      want(spec("a", { depends_on: ["b"] })),
      want(spec("b", { depends_on: ["a"] })),
      want(spec("web", { depends_on: ["a"] })),
    ]),
    current: {},
    expect: ["deploy web"],
    errors: { a: "dependency cycle: a -> b -> a", b: "dependency cycle: a -> b -> a" },
  },
  {
    name: "a dependency on an app not in the repository is an error and drops the action, leaving the running app as it is",
    desired: desiredOf([want(spec("web", { version: "2", depends_on: ["nope", "db"] })), want(spec("db"))]),
    current: currentOf([running(spec("web")), running(spec("db"), { status: "failed" })]),
    expect: ["restart db: status failed"],
    errors: { web: 'depends on "nope", which is not in the repository' },
  },
  {
    name: "a dependency that runs but is being removed from the repo is missing",
    desired: desiredOf([want(spec("web", { depends_on: ["db"] }))]),
    current: currentOf([running(spec("db"))]),
    expect: ["remove db"],
    errors: { web: 'depends on "db", which is not in the repository' },
  },
  {
    name: "an app with both a missing dependency and a cycle gets one error with both messages",
    desired: desiredOf([want(spec("a", { depends_on: ["b", "gone"] })), want(spec("b", { depends_on: ["a"] }))]),
    current: {},
    expect: [],
    errors: {
      a: 'depends on "gone", which is not in the repository; dependency cycle: a -> b -> a',
      b: "dependency cycle: a -> b -> a",
    },
  },
  {
    name: "a dependency whose spec is broken but that still runs satisfies ordering",
    desired: desiredOf([want(spec("web", { depends_on: ["db"] }))], ["db"]),
    current: currentOf([running(spec("db"))]),
    expect: ["deploy web"],
  },
  {
    name: "a dependency whose spec is broken and that does not run is not an error (the dependent waits for it)",
    desired: desiredOf([want(spec("web", { depends_on: ["db"] }))], ["db"]),
    current: {},
    expect: ["deploy web"],
  },
  ...(
    [
      ["a YAML string", "db"],
      ["a list", ["db"]],
      ["Erlang-style maps", [{ name: "db" }]],
    ] as const
  ).map(([style, dependsOn]): OrderCase => ({
    name: `depends_on written as ${style} orders the dependency first`,
    desired: desiredOf([want(spec("a_web", { depends_on: dependsOn as unknown as string[] })), want(spec("db"))]),
    current: {},
    expect: ["deploy db", "deploy a_web"],
  })),
];

describe("order", () => {
  for (const c of orderCases) {
    test(c.name, () => {
      const result = planned(deepFreeze(c.desired), deepFreeze(c.current));
      assert.deepEqual(summary(result.actions), c.expect);
      assert.deepEqual(Object.fromEntries(result.errors.map((e) => [e.app, e.message])), c.errors ?? {});
      assert.deepEqual(
        result.errors.map((e) => e.app),
        Object.keys(c.errors ?? {}).sort(),
        "errors sorted by app name",
      );
    });
  }

  test("the cycle is named from its smallest app whichever member it is reported on", () => {
    const desired = desiredOf([
      want(spec("m", { depends_on: ["z"] })),
      want(spec("z", { depends_on: ["c"] })),
      want(spec("c", { depends_on: ["m"] })),
    ]);
    const { errors } = planned(desired, {});
    assert.deepEqual(
      errors,
      ["c", "m", "z"].map((app) => ({ app, message: "dependency cycle: c -> m -> z -> c" })),
    );
  });

  test("the result does not depend on the order of the input actions", () => {
    const desired = desiredOf([
      want(spec("a", { depends_on: ["d"] })),
      want(spec("b", { depends_on: ["d"] })),
      want(spec("c")),
      want(spec("d", { depends_on: ["c"] })),
    ]);
    const current = currentOf([running(spec("x")), running(spec("y", { depends_on: ["x"] }))]);
    const actions = plan(desired, current);
    const expected = order(actions, desired, current);
    assert.deepEqual(summary(expected.actions), [
      "remove y",
      "remove x",
      "deploy c",
      "deploy d",
      "deploy a",
      "deploy b",
    ]);
    for (const shuffled of [
      [...actions].reverse(),
      [actions[3], actions[0], actions[5], actions[1], actions[4], actions[2]],
    ]) {
      assert.deepEqual(order(shuffled as Action[], desired, current), expected);
    }
  });

  test("a removal cycle among running apps still removes every app, deterministically", () => {
    const current = currentOf([
      running(spec("p", { depends_on: ["q"] })),
      running(spec("q", { depends_on: ["p"] })),
      running(spec("r", { depends_on: ["p"] })),
    ]);
    const result = planned(desiredOf([]), current);
    assert.deepEqual(summary(result.actions), ["remove r", "remove p", "remove q"]);
    assert.deepEqual(result.errors, []);
  });

  test("order does not mutate its inputs", () => {
    const desired = desiredOf(
      [
        want(spec("a", { depends_on: ["b"] })),
        want(spec("b", { depends_on: ["a"] })),
        want(spec("c", { depends_on: ["d"] })),
        want(spec("d")),
      ],
      ["e"],
    );
    const current = currentOf([running(spec("e")), running(spec("f", { depends_on: ["g"] })), running(spec("g"))]);
    const actions = plan(desired, current);
    const before = structuredClone({ actions, desired, current });
    order(deepFreeze(actions), deepFreeze(desired), deepFreeze(current));
    assert.deepEqual({ actions, desired, current }, before);
  });
});

describe("order at the cost of the change", () => {
  /** A seeded generator (mulberry32): the same graphs on every run and runtime. */
  function random(seed: number): () => number {
    return () => {
      seed = (seed + 0x6d2b79f5) | 0;
      let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
      t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
  }

  test("the actions of a few apps among many are ordered exactly as the whole graph orders them", () => {
    for (let seed = 1; seed <= 40; seed++) {
      const next = random(seed);
      const names = Array.from({ length: 30 }, (_, i) => `app${String(i).padStart(2, "0")}`);
      // A DAG: an app depends only on apps later in a shuffled sequence.
      const sequence = [...names].sort(() => next() - 0.5);
      const deps = new Map(
        sequence.map((name, i) => [name, sequence.slice(i + 1).filter(() => next() < 0.08)] as const),
      );
      const desired = desiredOf(names.map((name) => want(spec(name, { depends_on: deps.get(name)! }))));
      const everything = order(plan(desired, {}), desired, {});
      const changed = new Set(names.filter(() => next() < 0.2));
      const current = currentOf(
        names.filter((name) => !changed.has(name)).map((name) => running(desired.apps[name]!.spec)),
      );
      const actions = plan(desired, current);
      assert.deepEqual(
        actions.map((a) => a.app).sort(),
        [...changed].sort(),
        `seed ${seed}: only the changed apps act`,
      );
      const ordered = order(actions, desired, current);
      assert.deepEqual(
        ordered.actions.map((a) => a.app),
        everything.actions.map((a) => a.app).filter((app) => changed.has(app)),
        `seed ${seed}`,
      );
      assert.deepEqual(ordered.errors, []);
    }
  });

  test("a graph that changes between calls is judged afresh: a cycle appears and goes", () => {
    const acyclic = desiredOf([want(spec("a", { depends_on: ["b"] })), want(spec("b"))]);
    const cyclic = desiredOf([want(spec("a", { depends_on: ["b"] })), want(spec("b", { depends_on: ["a"] }))]);
    const missing = desiredOf([want(spec("a", { depends_on: ["b"] }))]);
    const errorsOf = (desired: DesiredState) => order(plan(desired, {}), desired, {}).errors.map((e) => e.message);
    assert.deepEqual(errorsOf(acyclic), []);
    assert.deepEqual(errorsOf(cyclic), ["dependency cycle: a -> b -> a", "dependency cycle: a -> b -> a"]);
    assert.deepEqual(errorsOf(cyclic), ["dependency cycle: a -> b -> a", "dependency cycle: a -> b -> a"]);
    assert.deepEqual(errorsOf(missing), ['depends on "b", which is not in the repository']);
    assert.deepEqual(errorsOf(desiredOf([want(spec("a", { depends_on: ["b"] }))], ["b"])), []);
    assert.deepEqual(errorsOf(acyclic), []);
  });
});

describe("waitingOn and pendingReason", () => {
  const db = spec("db", { health: { type: "tcp", port: 5432 } });
  const cases: { name: string; current: CurrentState; waiting: string[]; reason: string }[] = [
    {
      name: "a dependency that is not deployed is waited for",
      current: {},
      waiting: ["db"],
      reason: "waiting for db (not deployed)",
    },
    {
      name: "a starting dependency with unknown health is waited for",
      current: currentOf([running(db, { status: "starting", health: "unknown" })]),
      waiting: ["db"],
      reason: "waiting for db (starting, unknown)",
    },
    {
      name: "a running but unhealthy dependency is waited for",
      current: currentOf([running(db, { health: "unhealthy" })]),
      waiting: ["db"],
      reason: "waiting for db (running, unhealthy)",
    },
    {
      name: "a running dependency whose health check has not answered yet is waited for",
      current: currentOf([running(db, { health: "unknown" })]),
      waiting: ["db"],
      reason: "waiting for db (running, unknown)",
    },
    {
      name: "a failed dependency is waited for even if it last reported healthy",
      current: currentOf([running(db, { status: "failed", health: "healthy" })]),
      waiting: ["db"],
      reason: "waiting for db (failed, healthy)",
    },
    {
      name: "a running, healthy dependency is not waited for",
      current: currentOf([running(db)]),
      waiting: [],
      reason: "",
    },
    {
      name: "a running dependency without a health check is not waited for although its health is unknown",
      current: currentOf([running(spec("db"), { health: "unknown" })]),
      waiting: [],
      reason: "",
    },
  ];
  const app = spec("web", { depends_on: ["db"] });
  for (const c of cases) {
    test(c.name, () => {
      const waiting = waitingOn(app, deepFreeze(c.current));
      assert.deepEqual(waiting, c.waiting);
      assert.equal(pendingReason(waiting, c.current), c.reason);
    });
  }

  test("several dependencies are listed in depends_on order, skipping the ready ones", () => {
    const current = currentOf([running(spec("cache"), { health: "unhealthy" }), running(spec("queue"))]);
    const waiting = waitingOn(spec("web", { depends_on: ["db", "queue", "cache"] }), current);
    assert.deepEqual(waiting, ["db", "cache"]);
    assert.equal(pendingReason(waiting, current), "waiting for db (not deployed), cache (running, unhealthy)");
  });

  test("a dependent of a cycle member stays pending on that member", () => {
    const desired = desiredOf([
      want(spec("a", { depends_on: ["b"] })),
      want(spec("b", { depends_on: ["a"] })),
      want(spec("web", { depends_on: ["a"] })),
    ]);
    const [deploy] = planned(desired, {}).actions;
    assert.ok(deploy?.type === "deploy" && deploy.app === "web");
    assert.equal(pendingReason(waitingOn(deploy.spec, {}), {}), "waiting for a (not deployed)");
  });

  test("a dependency named like an Object.prototype member is not deployed", () => {
    assert.deepEqual(waitingOn(spec("web", { depends_on: ["toString"] }), {}), ["toString"]);
  });
});
