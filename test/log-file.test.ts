import { test } from "node:test";
import assert from "node:assert/strict";
import { readdir, readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { RotatingLog } from "../src/log-file.ts";
import { tempDir } from "./helpers/tmp.ts";

/** `count` numbered lines of exactly 100 bytes. */
const lines = (count: number, from = 0) =>
  Array.from({ length: count }, (_, i) => `line ${String(from + i).padStart(4, "0")} ${"x".repeat(89)}\n`);

async function filesOf(dir: string): Promise<string[]> {
  return (await readdir(dir)).sort();
}

for (const { keep, files } of [
  { keep: 0, files: ["app.log"] },
  { keep: 1, files: ["app.log", "app.log.1"] },
  { keep: 3, files: ["app.log", "app.log.1", "app.log.2", "app.log.3"] },
]) {
  test(`a log rotates before it would pass maxBytes and keeps ${keep} old file(s), newest first`, async (t) => {
    const dir = await tempDir(t);
    const log = new RotatingLog({ path: join(dir, "logs", "app.log"), maxBytes: 1000, keep });
    // Single lines and one chunk of many lines: both rotate between whole lines.
    for (const line of lines(25)) log.write(line);
    log.write(lines(25, 25).join(""));
    await log.close();
    assert.deepEqual(await filesOf(join(dir, "logs")), files);
    const texts = await Promise.all(files.map((f) => readFile(join(dir, "logs", f), "utf8")));
    for (const text of texts) {
      assert.equal(Buffer.byteLength(text), 1000, "every file is full, to the line");
      assert.ok(text.endsWith("\n"));
    }
    // Oldest (highest number) to newest: the last lines, in order, without a gap.
    const kept = texts.reverse().join("");
    assert.equal(
      kept,
      lines(50)
        .slice(50 - 10 * files.length)
        .join(""),
    );
  });
}

test("a line longer than a whole file gets a file of its own", async (t) => {
  const dir = await tempDir(t);
  const log = new RotatingLog({ path: join(dir, "app.log"), maxBytes: 100, keep: 2 });
  log.write("short\n");
  log.write(`${"y".repeat(250)}\n`);
  log.write("after\n");
  await log.close();
  assert.equal(await readFile(join(dir, "app.log.2"), "utf8"), "short\n");
  assert.equal(await readFile(join(dir, "app.log.1"), "utf8"), `${"y".repeat(250)}\n`);
  assert.equal(await readFile(join(dir, "app.log"), "utf8"), "after\n");
});

test("an existing file is appended to, and its size counts toward the next rotation", async (t) => {
  const dir = await tempDir(t);
  const path = join(dir, "app.log");
  await writeFile(path, "x".repeat(950));
  const log = new RotatingLog({ path, maxBytes: 1000 });
  log.write("a".repeat(40) + "\n");
  await log.drained();
  assert.equal((await stat(path)).size, 991);
  log.write("b".repeat(40) + "\n");
  await log.close();
  assert.equal(await readFile(path, "utf8"), "b".repeat(40) + "\n");
  assert.equal(await readFile(`${path}.1`, "utf8"), "x".repeat(950) + "a".repeat(40) + "\n");
});

test("write says when too much is queued, and drained() resolves once it is on disk", async (t) => {
  const dir = await tempDir(t);
  const log = new RotatingLog({ path: join(dir, "app.log"), maxQueuedBytes: 150 });
  assert.equal(log.write(lines(1)[0]!), true);
  assert.equal(log.write(lines(1, 1)[0]!), false, "200 bytes queued > 150");
  await log.drained();
  assert.equal(await readFile(join(dir, "app.log"), "utf8"), lines(2).join(""));
  assert.equal(log.write("more\n"), true, "the queue is empty again");
  await log.close();
});

test("a file that cannot be written is reported once, and later writes are dropped without throwing", async (t) => {
  const dir = await tempDir(t);
  await writeFile(join(dir, "not-a-dir"), "");
  const errors: string[] = [];
  const log = new RotatingLog({ path: join(dir, "not-a-dir", "app.log"), onError: (m) => errors.push(m) });
  log.write("one\n");
  await log.drained();
  log.write("two\n");
  await log.close();
  assert.equal(errors.length, 1);
  assert.match(errors[0]!, /^cannot write .*not-a-dir\/app\.log: .*; its output is no longer written there$/);
});

test("close writes what is queued; writes after close are dropped", async (t) => {
  const dir = await tempDir(t);
  const log = new RotatingLog({ path: join(dir, "app.log") });
  log.write("kept\n");
  await log.close();
  log.write("dropped\n");
  await log.close();
  assert.equal(await readFile(join(dir, "app.log"), "utf8"), "kept\n");
});
