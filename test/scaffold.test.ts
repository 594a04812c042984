import { test } from "node:test";
import assert from "node:assert/strict";
import { readdir, readFile } from "node:fs/promises";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { exampleRepoFiles } from "../src/scaffold.ts";

const EXAMPLE = fileURLToPath(new URL("../examples/gitops-repo/", import.meta.url));
/** The example repository's own apps, beyond what init writes: a lifecycle app with a JSON spec, and an Erlang-term spec. */
const OWN = ["apps/clock/app.json", "apps/legacy_api/app.config", "code/clock/index.js", "code/clock/package.json"];

async function files(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...(await files(path)));
    else out.push(relative(EXAMPLE, path));
  }
  return out;
}

test("examples/gitops-repo holds exactly what bc-gitops init writes, plus its own JSON and Erlang-term apps", async () => {
  const init = exampleRepoFiles();
  assert.deepEqual((await files(EXAMPLE)).sort(), [...Object.keys(init), ...OWN].sort());
  for (const [path, content] of Object.entries(init)) {
    assert.equal(
      await readFile(join(EXAMPLE, path), "utf8"),
      content,
      `${path} differs from src/scaffold.ts: run bun scripts/example-repo.ts`,
    );
  }
});
