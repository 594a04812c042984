import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { silentLogger } from "../src/logger.ts";
import { AppSpec } from "../src/spec.ts";
import { readState, writeState, type DurableState } from "../src/state.ts";
import { tempDir } from "./helpers/tmp.ts";

const deployed = (spec: Record<string, unknown>) => ({ spec, version: "1", deployed_at: "2026-01-01T00:00:00.000Z" });
const health = (port: number) => ({ type: "http", port, path: "/", interval: 30000, timeout: 5000 });

test("a state.json of an older agent loses the health.port it filled in, so remembered specs equal their files", async (t) => {
  const file = join(await tempDir(t), "state.json");
  // What the older agent wrote: every spec with health.port filled in (env.port, else 8080).
  const old = {
    version: 1,
    apps: {
      a: deployed({ name: "a", version: "1", env: { port: 3000 }, health: health(3000) }),
      b: deployed({ name: "b", version: "1", env: {}, health: health(8080) }),
      c: deployed({ name: "c", version: "1", env: { port: 0 }, health: health(8080) }),
      d: deployed({ name: "d", version: "1", env: { port: 3000 }, health: health(4000) }),
    },
  };
  await writeFile(file, JSON.stringify(old));
  const state = await readState(file, silentLogger);
  assert.deepEqual(Object.values(state.apps).map((app) => [app.spec.name, app.spec.health.port]), [["a", undefined], ["b", undefined], ["c", undefined], ["d", 4000]]);
  assert.deepEqual(state.apps.a!.spec, AppSpec.parse({ name: "a", version: "1", env: { port: 3000 }, health: { type: "http" } }));
});

test("a state.json this agent wrote keeps an explicit health.port, 8080 with env.port 0 included", async (t) => {
  const file = join(await tempDir(t), "state.json");
  const spec = AppSpec.parse({ name: "c", version: "1", env: { port: 0 }, health: { type: "tcp", port: 8080 } });
  const state: DurableState = { version: 1, apps: { c: { spec, version: "1", deployed_at: "2026-01-01T00:00:00.000Z" } } };
  await writeState(file, state);
  assert.equal(JSON.parse(await readFile(file, "utf8")).specs, 2);
  assert.equal((await readState(file, silentLogger)).apps.c?.spec.health.port, 8080);
});
