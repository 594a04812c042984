// Ending what a process app started outside its process group (src/runtimes/_process-tree.ts),
// with real processes.
import { test } from "node:test";
import assert from "node:assert/strict";
import type { TestContext } from "node:test";
import { procStat } from "../../src/_proc.ts";
import { spawnProcess } from "../../src/exec.ts";
import { endProcesses } from "../../src/runtimes/_process-tree.ts";
import { alive } from "../helpers/runtime-harness.ts";

async function sleeper(t: TestContext): Promise<{ pid: number; start: string }> {
  const child = await spawnProcess("sleep", ["300"], { env: { PATH: process.env.PATH ?? "/usr/bin:/bin" } });
  t.after(() => child.terminate(1000));
  const stat = await procStat(child.pid);
  assert.ok(stat, "the sleeper runs");
  return { pid: child.pid, start: stat.startTime };
}

test("a process is ended only while its pid still names the process that was recorded (same start time)", async (t) => {
  const target = await sleeper(t);
  const reused = await endProcesses([{ pid: target.pid, start: `${target.start}0` }], 1000);
  assert.deepEqual(reused, { ended: [], survivors: [] });
  assert.equal(await alive(target.pid), true, "another process under a recorded pid is left alone");
  const done = await endProcesses([target], 1000);
  assert.deepEqual(done, { ended: [target], survivors: [] });
  assert.equal(await alive(target.pid), false);
});

test("a process the agent may not signal is reported as surviving, with the reason", async (t) => {
  const target = await sleeper(t);
  const refuse = () => "the agent is not permitted to signal it (another user's process)";
  const result = await endProcesses([target], 100, refuse);
  assert.deepEqual(result, {
    ended: [],
    survivors: [{ ...target, reason: "the agent is not permitted to signal it (another user's process)" }],
  });
  assert.equal(await alive(target.pid), true);
});
