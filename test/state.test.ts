import { test } from "node:test";
import assert from "node:assert/strict";
import { open, readdir, readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { silentLogger } from "../src/logger.ts";
import { AppSpec } from "../src/spec.ts";
import {
  MAX_APP_STATE_BYTES,
  MAX_APP_STATE_DEPTH,
  MAX_STATE_FILE_BYTES,
  readState,
  writeState,
  type DeployedApp,
  type DurableState,
} from "../src/state.ts";
import { tempDir } from "./helpers/tmp.ts";
import { recordingLogger } from "./helpers/logger.ts";

/** `depth` arrays nested in one another, built without recursion. */
function nested(depth: number): unknown {
  let value: unknown = [];
  for (let i = 1; i < depth; i++) value = [value];
  return value;
}

function deployed(name: string, env: Record<string, unknown> = {}): DeployedApp {
  return {
    spec: AppSpec.parse({ name, version: "1.0.0", env }),
    version: "1.0.0",
    deployed_at: "2025-01-01T00:00:00.000Z",
  };
}

test("state.json grows linearly with a spec's nesting: each app is one line of compact JSON", async (t) => {
  const dir = await tempDir(t);
  const file = join(dir, "state.json");
  const state: DurableState = {
    version: 1,
    commit: "c".repeat(40),
    apps: { deep: deployed("deep", { deep: nested(1000) }), web: deployed("web", { port: 8080 }) },
  };
  await writeState(file, state);
  const { size } = await stat(file);
  // Indented, the 1000-level env alone took 2 MB (each level indented twice); compact it is 2 KB.
  assert.ok(size < 4096, `state.json is ${size} bytes for a 1000-level spec`);
  const text = await readFile(file, "utf8");
  assert.match(text, /^ {4}"deep": \{"spec":/m, "one line per app, readable");
  assert.deepEqual(JSON.parse(text).apps, JSON.parse(JSON.stringify(state.apps)));
  const back = await readState(file, recordingLogger());
  assert.deepEqual(back, { version: 1, commit: state.commit, apps: JSON.parse(JSON.stringify(state.apps)) });
});

test("an app whose entry is over the size limit is left out of state.json with an error naming it; the other apps are saved", async (t) => {
  const dir = await tempDir(t);
  const file = join(dir, "state.json");
  const big = "x".repeat(MAX_APP_STATE_BYTES + 1);
  const omitted = await writeState(file, {
    version: 1,
    apps: { big: deployed("big", { blob: big }), web: deployed("web") },
  });
  assert.deepEqual(Object.keys(omitted), ["big"]);
  assert.match(
    omitted.big!,
    /^app "big" is not saved in state\.json: its entry takes 1\.0 MB, over the 1\.0 MB limit per app: shrink its spec \(env\)$/,
  );
  const { size } = await stat(file);
  assert.ok(size < 10_000, `state.json is ${size} bytes`);
  const logger = recordingLogger();
  const back = await readState(file, logger);
  assert.deepEqual(Object.keys(back.apps), ["web"]);
  assert.ok(
    logger.warnings.some((w) =>
      /app "big" is not saved in state\.json: .*1\.0 MB limit per app.*deployed from git/.test(w),
    ),
    logger.warnings.join("\n"),
  );
});

test("an app nested deeper than the limit is left out when written, and ignored when an older state.json holds it, keeping the other apps", async (t) => {
  const dir = await tempDir(t);
  const file = join(dir, "state.json");
  const deep = deployed("deep", { deep: nested(MAX_APP_STATE_DEPTH + 100) });
  const omitted = await writeState(file, { version: 1, apps: { deep, web: deployed("web") } });
  assert.match(omitted.deep ?? "", /^app "deep" is not saved in state\.json: its spec nests deeper than 1024 levels$/);

  // As an older version wrote it: indented, holding the deep spec.
  await writeFile(file, JSON.stringify({ version: 1, apps: { deep, web: deployed("web") } }, null, 2));
  const logger = recordingLogger();
  const back = await readState(file, logger);
  assert.deepEqual(Object.keys(back.apps), ["web"]);
  assert.ok(
    logger.warnings.some((w) =>
      w.includes('ignoring the remembered app "deep": its spec nests deeper than 1024 levels'),
    ),
    logger.warnings.join("\n"),
  );
});

test("a state.json far larger than bc-gitops writes is moved aside unread, with the reason", async (t) => {
  const dir = await tempDir(t);
  const file = join(dir, "state.json");
  // Sparse: the size without the disk space (an older version wrote 800 MB for one deep spec).
  const handle = await open(file, "w");
  await handle.truncate(MAX_STATE_FILE_BYTES + 1);
  await handle.close();
  const logger = recordingLogger();
  assert.deepEqual(await readState(file, logger), { version: 1, apps: {} });
  assert.match(
    logger.warnings.join("\n"),
    /state\.json is corrupt \(it is 256\.0 MB, more than bc-gitops writes \(at most 1\.0 MB per app\)/,
  );
  assert.ok((await readdir(dir)).some((f) => f.startsWith("state.json.corrupt-")));
});

test("one remembered app that is not an object or no longer validates is skipped; the others are kept", async (t) => {
  const dir = await tempDir(t);
  const file = join(dir, "state.json");
  const web = deployed("web");
  await writeFile(
    file,
    JSON.stringify({
      version: 1,
      apps: { nothing: null, list: [1], wrong: { spec: { name: "other", version: "1" } }, web },
    }),
  );
  const logger = recordingLogger();
  const back = await readState(file, logger);
  assert.deepEqual(Object.keys(back.apps), ["web"]);
  for (const name of ["nothing", "list", "wrong"])
    assert.ok(
      logger.warnings.some((w) => w.includes(`ignoring the remembered app "${name}"`)),
      name,
    );
});

const remembered = (spec: Record<string, unknown>) => ({ spec, version: "1", deployed_at: "2026-01-01T00:00:00.000Z" });
const health = (port: number) => ({ type: "http", port, path: "/", interval: 30000, timeout: 5000 });

test("a state.json of an older agent loses the health.port it filled in, so remembered specs equal their files", async (t) => {
  const file = join(await tempDir(t), "state.json");
  // What the older agent wrote: every spec with health.port filled in (env.port, else 8080).
  const old = {
    version: 1,
    apps: {
      a: remembered({ name: "a", version: "1", env: { port: 3000 }, health: health(3000) }),
      b: remembered({ name: "b", version: "1", env: {}, health: health(8080) }),
      c: remembered({ name: "c", version: "1", env: { port: 0 }, health: health(8080) }),
      d: remembered({ name: "d", version: "1", env: { port: 3000 }, health: health(4000) }),
    },
  };
  await writeFile(file, JSON.stringify(old));
  const state = await readState(file, silentLogger);
  assert.deepEqual(
    Object.values(state.apps).map((app) => [app.spec.name, app.spec.health.port]),
    [
      ["a", undefined],
      ["b", undefined],
      ["c", undefined],
      ["d", 4000],
    ],
  );
  assert.deepEqual(
    state.apps.a!.spec,
    AppSpec.parse({ name: "a", version: "1", env: { port: 3000 }, health: { type: "http" } }),
  );
});

test("a state.json this agent wrote keeps an explicit health.port, 8080 with env.port 0 included", async (t) => {
  const file = join(await tempDir(t), "state.json");
  const spec = AppSpec.parse({ name: "c", version: "1", env: { port: 0 }, health: { type: "tcp", port: 8080 } });
  const state: DurableState = {
    version: 1,
    apps: { c: { spec, version: "1", deployed_at: "2026-01-01T00:00:00.000Z" } },
  };
  await writeState(file, state);
  assert.equal(JSON.parse(await readFile(file, "utf8")).specs, 2);
  assert.equal((await readState(file, silentLogger)).apps.c?.spec.health.port, 8080);
});

test("read only (bc-gitops plan beside a running agent), a corrupt state.json is reported and left where it is", async (t) => {
  const dir = await tempDir(t);
  const file = join(dir, "state.json");
  await writeFile(file, "{ not json");
  const state = await readState(file, silentLogger, { readOnly: true });
  assert.deepEqual(state.apps, {});
  assert.deepEqual(await readdir(dir), ["state.json"]);
});
