/** The README documents the spec by example: every app spec it shows must pass `bc-gitops validate` cleanly. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { runCli } from "./helpers/cli.ts";
import { tempDir, writeTree } from "./helpers/tmp.ts";

/** The README's YAML code blocks that are app specs (they set both name and version at the top level). */
async function readmeSpecs(): Promise<string[]> {
  const readme = await readFile(new URL("../README.md", import.meta.url), "utf8");
  const blocks = [...readme.matchAll(/^```ya?ml\n([\s\S]*?)^```$/gm)].map((m) => m[1]!);
  return blocks.filter((block) => /^name:/m.test(block) && /^version:/m.test(block));
}

test("the README shows at least one app spec", async () => {
  assert.ok((await readmeSpecs()).length >= 1);
});

test("every app spec in the README validates with no error and no warning", async (t) => {
  for (const [i, spec] of (await readmeSpecs()).entries()) {
    const root = await tempDir(t);
    const name = /^name:\s*(\S+)/m.exec(spec)![1]!;
    // Dependencies it names are stubbed, so the repository-level checks pass as in a real repository.
    const deps =
      /^depends_on:\s*\[([^\]]*)\]/m
        .exec(spec)?.[1]
        ?.split(",")
        .map((d) => d.trim())
        .filter(Boolean) ?? [];
    const files: Record<string, string> = { [`apps/${name}/app.yaml`]: spec };
    for (const dep of deps) files[`apps/${dep}/app.yaml`] = `name: ${dep}\nversion: "1.0.0"\n`;
    await writeTree(root, files);
    const result = await runCli(["validate", root]);
    assert.equal(result.exitCode, 0, `README spec #${i + 1} (${name}):\n${result.stdout}${result.stderr}`);
    assert.match(result.stdout, / 0 errors, 0 warnings$/m, `README spec #${i + 1} (${name}):\n${result.stdout}`);
  }
});
