/**
 * The state journal: actions that complete at the same time (a tick applies independent apps
 * concurrently) are each one whole line, in the order they were recorded, and replay to the state
 * they describe.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { appendFile, readFile, readdir } from "node:fs/promises";
import { join } from "node:path";
import { silentLogger } from "../src/logger.ts";
import { StateJournal, journalPath } from "../src/state-journal.ts";
import { AppSpec } from "../src/spec.ts";
import { emptyState, type DeployedApp } from "../src/state.ts";
import { tempDir } from "./helpers/tmp.ts";

const entry = (name: string, i: number): DeployedApp => {
  // Entries of very different sizes, so that a write that is not serialised could overtake another.
  const spec = AppSpec.parse({ name, version: `1.0.${i}`, env: { blob: "x".repeat((i % 7) * 20_000) } });
  return { spec, version: spec.version, deployed_at: new Date(0).toISOString() };
};

test("records made at the same time are whole lines in the order they were made, and replay in that order", async (t) => {
  const dir = await tempDir(t);
  const journal = new StateJournal(journalPath(dir));
  const names = Array.from({ length: 60 }, (_, i) => `app_${i % 20}`);
  // Not awaited one by one: as a tick's concurrent actions record their results.
  await Promise.all(names.map((name, i) => journal.record(name, i % 10 === 9 ? undefined : entry(name, i))));
  const lines = (await readFile(journalPath(dir), "utf8")).split("\n").filter(Boolean);
  assert.equal(lines.length, names.length);
  const parsed = lines.map((line) => JSON.parse(line) as { app: string; entry: DeployedApp | null });
  assert.deepEqual(
    parsed.map((l) => [l.app, l.entry?.version ?? null]),
    names.map((name, i) => [name, i % 10 === 9 ? null : `1.0.${i}`]),
  );

  const state = emptyState();
  assert.equal(await new StateJournal(journalPath(dir)).replay(state, silentLogger), names.length);
  // The last record of each app wins: app_9 and app_19 were last removed, the others last deployed at 40-59.
  assert.deepEqual(
    Object.fromEntries(Object.entries(state.apps).map(([k, v]) => [k, v.version])),
    Object.fromEntries(names.slice(40).flatMap((name, i) => ((i + 40) % 10 === 9 ? [] : [[name, `1.0.${i + 40}`]]))),
  );
});

test("a clear requested while records are being written happens after them and leaves no journal", async (t) => {
  const dir = await tempDir(t);
  const journal = new StateJournal(journalPath(dir));
  const writes = Array.from({ length: 20 }, (_, i) => journal.record(`app_${i}`, entry(`app_${i}`, i)));
  const cleared = journal.clear();
  await Promise.all([...writes, cleared]);
  assert.deepEqual(await readdir(dir), []);
});

test("records made while a write is in flight go out together: 200 concurrent records take a few writes", async (t) => {
  const dir = await tempDir(t);
  let writes = 0;
  const journal = new StateJournal(journalPath(dir), {
    append: (file, text) => {
      writes++;
      return appendFile(file, text);
    },
  });
  const names = Array.from({ length: 200 }, (_, i) => `app_${i}`);
  await Promise.all(names.map((name, i) => journal.record(name, entry(name, i))));
  const lines = (await readFile(journalPath(dir), "utf8")).split("\n").filter(Boolean);
  assert.deepEqual(
    lines.map((line) => (JSON.parse(line) as { app: string }).app),
    names,
  );
  assert.ok(writes >= 1 && writes <= 2, `${writes} writes for 200 records made at once`);
});

test("a record made after a clear was requested is written after the clear, and kept", async (t) => {
  const dir = await tempDir(t);
  const journal = new StateJournal(journalPath(dir));
  const before = journal.record("app_a", entry("app_a", 1));
  const cleared = journal.clear();
  const after = journal.record("app_b", entry("app_b", 2));
  await Promise.all([before, cleared, after]);
  const lines = (await readFile(journalPath(dir), "utf8")).split("\n").filter(Boolean);
  assert.deepEqual(
    lines.map((line) => (JSON.parse(line) as { app: string }).app),
    ["app_b"],
  );
});
