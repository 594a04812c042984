import { test } from "node:test";
import assert from "node:assert/strict";
import { runCli } from "./helpers/cli.ts";

test("the demo runs to the end: deploy, upgrade, reconfigure, hot reload, remove, each answered as expected", async () => {
  const result = await runCli(["demo"], { timeoutMs: 120_000 });
  assert.equal(result.exitCode, 0, result.stdout + result.stderr);
  const out = result.stdout;
  const steps: Array<[string, string]> = [
    ["1/5 deploy", "deploy hello"],
    ["2/5 upgrade", "upgrade hello"],
    ["3/5 reconfigure", "reconfigure hello"],
    ["4/5 hot reload", "hot_reload hello"],
    ["5/5 remove", "remove hello"],
  ];
  for (const [step, action] of steps) {
    assert.ok(out.includes(step), `${step} shown`);
    assert.match(out, new RegExp(`✔ ${action} \\(\\d+ ms\\)`));
  }
  assert.match(out, /app answers: 200 Hello, demo!/);
  assert.match(out, /app answers: 200 Howdy, demo!\n/);
  assert.match(out, /app answers: 200 Howdy, demo! \(hot-reloaded, same version\)/);
  assert.match(
    out,
    /app answers: the port is closed: removed\n/,
    "the remove step reports the closed port as the expected outcome",
  );
  assert.doesNotMatch(out, /no answer/);
  assert.match(out, /✔ demo complete in \d+ ms; cleaned up/);
});
