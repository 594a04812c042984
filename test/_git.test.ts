import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm, stat, writeFile } from "node:fs/promises";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { diskProblemOf, isLocalPath, runGit, transportOf } from "../src/_git.ts";
import { GitopsError } from "../src/errors.ts";
import { redact, registerUrlCredentials } from "../src/redact.ts";
import { AppSpec } from "../src/spec.ts";
import { Workspaces } from "../src/workspace.ts";

/** The host's git configuration allowing every transport, as an operator's ~/.gitconfig could. */
const HOST_ALLOWS_EVERYTHING = {
  GIT_CONFIG_COUNT: "3",
  GIT_CONFIG_KEY_0: "protocol.allow",
  GIT_CONFIG_VALUE_0: "always",
  GIT_CONFIG_KEY_1: "protocol.ext.allow",
  GIT_CONFIG_VALUE_1: "always",
  GIT_CONFIG_KEY_2: "protocol.fd.allow",
  GIT_CONFIG_VALUE_2: "always",
};

const exists = (path: string) =>
  stat(path).then(
    () => true,
    () => false,
  );

/** Runs `fn` with a fresh temp dir, removed afterwards (Deno skips `t.after` inside `describe`). */
async function inTemp(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), "bc-gitops-rungit-"));
  try {
    await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

async function rejection(promise: Promise<unknown>): Promise<GitopsError> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof GitopsError, `expected a GitopsError, got ${String(error)}`);
    return error;
  }
  assert.fail("expected a rejection");
}

describe("runGit", () => {
  test("the ext:: and fd:: transports run nothing, even when the host's git config allows them", () =>
    inTemp(async (dir) => {
      const marker = join(dir, "pwned");
      for (const url of [`ext::sh -c touch% ${marker}`, "fd::0"]) {
        const error = await rejection(
          runGit(["ls-remote", "--", url, "HEAD"], { cwd: dir, url, timeoutMs: 20_000, env: HOST_ALLOWS_EVERYTHING }),
        );
        assert.match(error.message, /transport '(ext|fd)' not allowed/, error.message);
      }
      const smuggled = await rejection(
        runGit(["ls-remote", "--", `ext::sh -c touch% ${marker}`, "HEAD"], {
          cwd: dir,
          timeoutMs: 20_000,
          env: { ...HOST_ALLOWS_EVERYTHING, GIT_ALLOW_PROTOCOL: "ext" },
        }),
      );
      assert.match(smuggled.message, /transport 'ext' not allowed/, "the env option cannot widen the transports");
      assert.equal(await exists(marker), false, "the ext:: command ran");
    }));

  test("plain http is allowed only for a call whose URL is http://", () =>
    inTemp(async (dir) => {
      const url = "http://127.0.0.1:1/repo.git";
      const refused = await rejection(runGit(["ls-remote", "--", url], { cwd: dir, timeoutMs: 20_000 }));
      assert.match(refused.message, /transport 'http' not allowed/);
      const tried = await rejection(runGit(["ls-remote", "--", url], { cwd: dir, url, timeoutMs: 20_000 }));
      assert.doesNotMatch(tried.message, /not allowed/);
      assert.match(tried.message, /127\.0\.0\.1/, "git tried to connect");
    }));

  test("an app's git source using ext:: runs nothing, even when the host's git config allows it", () =>
    inTemp(async (dir) => {
      const marker = join(dir, "pwned");
      const saved = Object.fromEntries(Object.keys(HOST_ALLOWS_EVERYTHING).map((key) => [key, process.env[key]]));
      Object.assign(process.env, HOST_ALLOWS_EVERYTHING);
      try {
        const workspaces = new Workspaces({ localPath: join(dir, "local") });
        const app = AppSpec.parse({
          name: "web",
          version: "1.0.0",
          source: { type: "git", url: `ext::sh -c touch% ${marker}`, ref: "main" },
        });
        const error = await rejection(workspaces.resolveRevision(app, { repoDir: dir }));
        assert.match(error.message, /transport 'ext' not allowed/, error.message);
      } finally {
        for (const [key, value] of Object.entries(saved)) {
          if (value === undefined) delete process.env[key];
          else process.env[key] = value;
        }
      }
      assert.equal(await exists(marker), false, "the ext:: command ran");
    }));

  test("an app's git source that asks for a password gets none: no askpass program of the host is run", () =>
    inTemp(async (dir) => {
      const marker = join(dir, "asked");
      const askpass = join(dir, "askpass.sh");
      await writeFile(askpass, `#!/bin/sh\necho "$1" >> '${marker}'\necho guessed\n`, { mode: 0o755 });
      let requests = 0;
      const server = createServer((_request, response) => {
        requests += 1;
        response.writeHead(401, { "WWW-Authenticate": 'Basic realm="git"' }).end();
      });
      await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
      const saved = {
        SSH_ASKPASS: process.env.SSH_ASKPASS,
        GIT_ASKPASS: process.env.GIT_ASKPASS,
        DISPLAY: process.env.DISPLAY,
      };
      process.env.SSH_ASKPASS = askpass;
      process.env.DISPLAY = ":0";
      delete process.env.GIT_ASKPASS;
      try {
        const { port } = server.address() as AddressInfo;
        const workspaces = new Workspaces({ localPath: join(dir, "local") });
        const app = AppSpec.parse({
          name: "web",
          version: "1.0.0",
          source: { type: "git", url: `http://127.0.0.1:${port}/app.git`, ref: "main" },
        });
        const error = await rejection(workspaces.resolveRevision(app, { repoDir: dir }));
        assert.equal(error.code, "E_GIT_UNREACHABLE", error.message);
      } finally {
        for (const [key, value] of Object.entries(saved)) {
          if (value === undefined) delete process.env[key];
          else process.env[key] = value;
        }
        await new Promise((resolve) => server.close(resolve));
      }
      assert.ok(requests > 0, "git reached the server");
      assert.equal(await exists(marker), false, "git ran the host's askpass program");
    }));
});

describe("git URL rules", () => {
  test("a URL is a local path or a remote exactly as git reads it", () => {
    const table: [string, boolean, string][] = [
      ["/srv/gitops.git", true, "file"],
      ["./gitops", true, "file"],
      ["gitops", true, "file"],
      ["dir/with:colon", true, "file"],
      ["file:///srv/gitops.git", false, "file"],
      ["https://git.example/gitops.git", false, "https"],
      ["http://git.example/gitops.git", false, "http"],
      ["git://git.example/gitops.git", false, "git"],
      ["ssh://git@git.example/gitops.git", false, "ssh"],
      ["git+ssh://git@git.example/gitops.git", false, "ssh"],
      ["git@github.com:acme/gitops.git", false, "ssh"],
      ["a:b", false, "ssh"],
      ["ext::sh -c touch% /tmp/x", false, "ext"],
      ["fd::0", false, "fd"],
    ];
    for (const [url, local, transport] of table) {
      assert.equal(isLocalPath(url), local, `isLocalPath(${url})`);
      assert.equal(transportOf(url), transport, `transportOf(${url})`);
    }
  });
  test("an app's git source a:b is the ssh host a, as git reads it, not a file in the gitops repository", () =>
    inTemp(async (dir) => {
      const saved = process.env.GIT_SSH_COMMAND;
      process.env.GIT_SSH_COMMAND = "false"; // no real ssh: the URL's reading is what is tested
      try {
        const workspaces = new Workspaces({ localPath: join(dir, "local") });
        const app = AppSpec.parse({ name: "web", version: "1.0.0", source: { type: "git", url: "a:b", ref: "main" } });
        const error = await rejection(workspaces.resolveRevision(app, { repoDir: join(dir, "gitops") }));
        assert.match(error.message, /^cannot reach git repository a:b: /, error.message);
      } finally {
        if (saved === undefined) delete process.env.GIT_SSH_COMMAND;
        else process.env.GIT_SSH_COMMAND = saved;
      }
    }));
});

describe("local disk problems", () => {
  test("git's wording of a full, read-only or unwritable disk is told apart from remote and damage errors", () => {
    const failed = (stderr: string) =>
      new GitopsError("git fetch failed (exit 128)", { code: "E_EXEC", details: { stderr } });
    const table: [string, string | undefined][] = [
      ["fatal: unable to write loose object file: No space left on device\nfatal: unpack-objects failed", "ENOSPC"],
      ["error: unable to write symref for HEAD: No space left on device", "ENOSPC"],
      ["fatal: Unable to create '/x/git/repo/refs/heads/main.lock': Read-only file system", "EROFS"],
      ["error: insufficient permission for adding an object to repository database ./objects", "EACCES"],
      ["fatal: could not create leading directories of '/x/git/.tmp-clone-1': Permission denied", "EACCES"],
      ["error: unable to write file x: Disk quota exceeded", "EDQUOT"],
      ["git@github.com: Permission denied (publickey).\nfatal: Could not read from remote repository.", undefined],
      ["fatal: unable to access 'https://git.example/r.git/': Could not resolve host: git.example", undefined],
      ["fatal: remote error: upload-pack: not our ref 0123456789abcdef0123456789abcdef01234567", undefined],
      ["fatal: bad object refs/heads/main", undefined],
    ];
    for (const [stderr, errno] of table) assert.equal(diskProblemOf(failed(stderr))?.errno, errno, stderr);
    const nodeError = Object.assign(new Error("ENOSPC: no space left on device, mkdir '/x'"), { code: "ENOSPC" });
    assert.equal(diskProblemOf(nodeError)?.errno, "ENOSPC");
    assert.equal(diskProblemOf(Object.assign(new Error("gone"), { code: "ENOENT" })), undefined);
  });
});

describe("URL credentials", () => {
  test("a password holding an unencoded @ is hidden up to the last @ of the authority", () => {
    const table: [string, string][] = [
      ["cannot reach http://user:p@ss@host/r.git (branch main)", "cannot reach http://***@host/r.git (branch main)"],
      [
        "fatal: unable to access 'https://u:a@b@c@git.example:8443/r.git/'",
        "fatal: unable to access 'https://***@git.example:8443/r.git/'",
      ],
      ["https://token@host/r.git and ssh://git@host/r.git", "https://***@host/r.git and ssh://***@host/r.git"],
      ["https://host/r.git?user=a@b", "https://host/r.git?user=a@b"],
      ["https://host/path@v1", "https://host/path@v1"],
    ];
    for (const [text, shown] of table) assert.equal(redact(text), shown, text);
  });

  test("the parsed password of a URL is hidden wherever it appears", () => {
    registerUrlCredentials("https://deploy:s3cr%40t-pw@git.example/r.git");
    assert.equal(redact("password s3cr%40t-pw, decoded s3cr@t-pw"), "password ***, decoded ***");
  });
});
