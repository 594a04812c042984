/**
 * `bc-gitops init`: a ready gitops repository with one example app that runs as it is (its code is
 * in the repository, referenced by a `path` source, so it needs no registry and no network).
 * The one copy of the example app: the demo builds its throwaway repository with these files, and
 * `examples/gitops-repo/` is generated from them (`bun scripts/example-repo.ts`; `test/scaffold.test.ts`
 * fails when the two differ).
 */
import { mkdir, readdir, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { GitopsError } from "./errors.ts";
import { exec } from "./exec.ts";
import { appSpecJsonSchema } from "./spec.ts";

/** The example app's files, by path inside the repository. `port` is the port the app serves on. */
export function exampleRepoFiles(port = 8080): Record<string, string> {
  return {
    "README.md": `# gitops repository

Managed by bc-gitops. Each directory under \`apps/\` holds one app spec (\`app.yaml\`); commit and
push a change and the agent applies it:

- change \`version\` -> upgrade (restart on the new version, rolled back if it fails)
- change only \`env\` -> reconfigure
- change the code under \`code/\` but not \`version\` -> hot reload in place
- delete the app's directory -> remove

Check a change before pushing: \`bc-gitops validate .\`. Editors with the YAML language server
check specs against \`app-spec.schema.json\` (refresh it with \`bc-gitops schema > app-spec.schema.json\`).
`,
    "apps/README.md": `One directory per app, each with one spec file (app.yaml). Keep this file: it keeps apps/
in git when every app is removed (a missing apps directory is an error, never "remove everything").
`,
    "app-spec.schema.json": `${JSON.stringify(appSpecJsonSchema(), null, 2)}\n`,
    "apps/hello/app.yaml": `# yaml-language-server: $schema=../../app-spec.schema.json
name: hello
version: "1.0.0"
description: Says hello over HTTP
source:
  type: path
  path: code/hello          # relative to the repository root
env:
  port: ${port}
  greeting: Hello
health:
  type: http
  path: /health
  interval: 5s
  timeout: 2s
`,
    "code/hello/package.json": `${JSON.stringify({ name: "hello", version: "1.0.0", type: "module", main: "server.js" }, null, 2)}\n`,
    "code/hello/server.js": `// A fetch app: the agent listens on env.port and calls fetch(request, ctx).
import { greet } from "./greet.js";

export default {
  fetch(request, ctx) {
    const url = new URL(request.url);
    if (url.pathname === "/health") return new Response("ok");
    return new Response(greet(ctx?.env?.greeting ?? "Hello", url.searchParams.get("name") ?? "world") + "\\n");
  },
};
`,
    "code/hello/greet.js": `// Change this (same version), commit, push: the agent hot-reloads it in place.
export function greet(greeting, name) {
  return \`\${greeting}, \${name}!\`;
}
`,
  };
}

/** Writes `files` under `dir`. */
export async function writeFiles(dir: string, files: Record<string, string>): Promise<void> {
  for (const [path, content] of Object.entries(files)) {
    await mkdir(dirname(join(dir, path)), { recursive: true });
    await writeFile(join(dir, path), content);
  }
}

/** Git identity for commits the tool makes itself, used only when the user has none configured. */
export async function gitIdentityEnv(cwd: string): Promise<Record<string, string>> {
  const email = await exec("git", ["config", "user.email"], { cwd, allowExitCodes: [0, 1] });
  if (email.stdout.trim()) return {};
  return {
    GIT_AUTHOR_NAME: "bc-gitops",
    GIT_AUTHOR_EMAIL: "bc-gitops@localhost",
    GIT_COMMITTER_NAME: "bc-gitops",
    GIT_COMMITTER_EMAIL: "bc-gitops@localhost",
  };
}

/** Creates a gitops repository in `dir` (which must be missing or empty): files, `git init -b main`, first commit. */
export async function scaffold(dir: string, port = 8080): Promise<{ dir: string; commit: string; files: string[] }> {
  const existing = await readdir(dir).catch(() => []);
  if (existing.length > 0) {
    throw new GitopsError(`${dir} is not empty: pass a new or empty directory to init`, {
      code: "E_CONFIG",
      retry: "stalled",
    });
  }
  const files = exampleRepoFiles(port);
  await mkdir(dir, { recursive: true });
  await writeFiles(dir, files);
  await exec("git", ["init", "-q", "-b", "main", "--", dir]);
  const env = await gitIdentityEnv(dir);
  await exec("git", ["add", "-A"], { cwd: dir });
  await exec("git", ["commit", "-q", "-m", "Initial gitops repository (bc-gitops init)"], { cwd: dir, env });
  const commit = (await exec("git", ["rev-parse", "HEAD"], { cwd: dir })).stdout.trim();
  return { dir, commit, files: Object.keys(files) };
}
