import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { GitopsError } from "../src/errors.ts";
import { exec } from "../src/exec.ts";
import { checkVerifyConfig, verifyCommit } from "../src/verify.ts";
import type { VerifyConfig } from "../src/verify.ts";
import { GIT_ENV } from "./helpers/gitops-repo.ts";

/** Clean-ups of one test, run in reverse order when it ends (Deno skips `t.after` inside `describe`). */
interface Scope {
  defer(cleanup: () => Promise<unknown>): void;
  tempDir(prefix: string): Promise<string>;
}

/** A test body with a {@link Scope} whose clean-ups run however the body ends. */
function scoped(body: (scope: Scope) => Promise<void>): () => Promise<void> {
  return async () => {
    const cleanups: (() => Promise<unknown>)[] = [];
    const scope: Scope = {
      defer: (cleanup) => void cleanups.push(cleanup),
      async tempDir(prefix) {
        const dir = await mkdtemp(join(tmpdir(), prefix));
        cleanups.push(() => rm(dir, { recursive: true, force: true }));
        return dir;
      },
    };
    try {
      await body(scope);
    } finally {
      for (const cleanup of cleanups.reverse()) await cleanup().catch(() => {});
    }
  };
}

const run = async (command: string, args: string[], env: Record<string, string> = {}, cwd?: string, input?: string) =>
  (
    await exec(command, args, {
      env: { ...GIT_ENV, ...env },
      timeoutMs: 30_000,
      ...(cwd ? { cwd } : {}),
      ...(input ? { input } : {}),
    })
  ).stdout.trim();

/** An ed25519 key pair without passphrase; `fingerprint` is what ssh-keygen prints (SHA256:…). */
async function sshKey(dir: string, name: string): Promise<{ pub: string; line: string; fingerprint: string }> {
  const path = join(dir, name);
  await run("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", name, "-f", path]);
  const fingerprint = (await run("ssh-keygen", ["-l", "-f", `${path}.pub`])).split(" ")[1]!;
  return { pub: `${path}.pub`, line: (await readFile(`${path}.pub`, "utf8")).trim(), fingerprint };
}

/** A throwaway GnuPG home with one ed25519 signing key; its agent is stopped and the home removed after the test. */
async function gpgKey(scope: Scope, uid = "Test <test@example.com>"): Promise<{ home: string; fingerprint: string }> {
  const home = await scope.tempDir("bc-gitops-gpgkey-");
  // Signing starts an agent for this home; stop it (it is this home's agent alone) before the home goes.
  scope.defer(() => run("gpgconf", ["--kill", "gpg-agent"], { GNUPGHOME: home }));
  await run("gpg", ["--batch", "--passphrase", "", "--quick-gen-key", uid, "ed25519", "sign", "never"], {
    GNUPGHOME: home,
  });
  const listing = await run("gpg", ["--batch", "--with-colons", "--list-keys"], { GNUPGHOME: home });
  const fingerprint = /^fpr:(?:[^:]*:){8}([0-9A-F]+):/m.exec(listing)?.[1];
  assert.ok(fingerprint, `no fingerprint in ${listing}`);
  return { home, fingerprint };
}

type Signing = { ssh: string } | { gpg: { home: string; fingerprint: string } } | undefined;

/** A bare repository, a work clone that pushes to it, the allowed key and a second, unlisted key. */
async function fixture(scope: Scope) {
  const root = await scope.tempDir("bc-gitops-verify-");
  const bare = join(root, "remote.git");
  const work = join(root, "work");
  await run("git", ["init", "-q", "--bare", "-b", "main", bare]);
  await run("git", ["init", "-q", "-b", "main", work]);
  const allowed = await sshKey(root, "allowed");
  const stranger = await sshKey(root, "stranger");
  const allowedSigners = join(root, "allowed_signers");
  await writeFile(allowedSigners, `# the release keys\ntest@example.com ${allowed.line}\n`);
  let counter = 0;
  return {
    root,
    bare,
    allowed,
    stranger,
    ssh: { mode: "ssh", allowed_signers: allowedSigners } satisfies VerifyConfig,
    /** Commits a new file (signed as asked), pushes it and returns the commit id. */
    async commit(signing: Signing, env: Record<string, string> = {}): Promise<string> {
      await writeFile(join(work, `file-${++counter}`), String(counter));
      await run("git", ["add", "-A"], env, work);
      const sign =
        signing === undefined
          ? []
          : "ssh" in signing
            ? ["-c", "gpg.format=ssh", "-c", `user.signingkey=${signing.ssh}`]
            : ["-c", "gpg.format=openpgp", "-c", `user.signingkey=${signing.gpg.fingerprint}`];
      const gnupg: Record<string, string> = signing && "gpg" in signing ? { GNUPGHOME: signing.gpg.home } : {};
      await run(
        "git",
        [...sign, "commit", "-q", ...(signing ? ["-S"] : []), "-m", `commit ${counter}`],
        { ...env, ...gnupg },
        work,
      );
      await run("git", ["push", "-q", "--force", bare, "HEAD:refs/heads/main"], {}, work);
      return run("git", ["rev-parse", "HEAD"], {}, work);
    },
    /** Writes into the bare repository a copy of `commit` with another message but the same signature. */
    async tamper(commit: string): Promise<string> {
      const raw = await run("git", ["cat-file", "commit", commit], { GIT_DIR: bare });
      const forged = raw.replace(/\n\n[^]*$/, "\n\nforged message\n");
      assert.notEqual(forged, raw);
      return run("git", ["hash-object", "-t", "commit", "-w", "--stdin"], { GIT_DIR: bare }, undefined, forged);
    },
  };
}

const rejects = async (promise: Promise<unknown>, code: string, message?: RegExp) =>
  assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof GitopsError, `expected a GitopsError, got ${String(error)}`);
    assert.equal(error.code, code, error.message);
    if (message) assert.match(error.message, message);
    return true;
  });

describe("verifyCommit in ssh mode", () => {
  test(
    "a commit signed by a key in allowed_signers is verified and names the principal and key",
    scoped(async (scope) => {
      const fx = await fixture(scope);
      const commit = await fx.commit({ ssh: fx.allowed.pub });
      const verdict = await verifyCommit(fx.bare, commit, fx.ssh);
      assert.deepEqual(verdict, { ok: true, signer: `test@example.com (ED25519 key ${fx.allowed.fingerprint})` });
    }),
  );

  const rejections: [
    string,
    (fx: Awaited<ReturnType<typeof fixture>>) => Promise<string>,
    (fx: Awaited<ReturnType<typeof fixture>>, short: string) => string,
  ][] = [
    ["an unsigned commit", (fx) => fx.commit(undefined), (_, short) => `commit ${short} is not signed`],
    [
      "a commit signed by a key that allowed_signers does not list",
      (fx) => fx.commit({ ssh: fx.stranger.pub }),
      (fx, short) =>
        `commit ${short} is signed by an unknown key ${fx.stranger.fingerprint} (ED25519): ${fx.ssh.allowed_signers} does not allow it`,
    ],
  ];
  for (const [what, make, reason] of rejections) {
    test(
      `${what} is rejected with a reason`,
      scoped(async (scope) => {
        const fx = await fixture(scope);
        const commit = await make(fx);
        assert.deepEqual(await verifyCommit(fx.bare, commit, fx.ssh), {
          ok: false,
          reason: reason(fx, commit.slice(0, 12)),
        });
      }),
    );
  }

  test(
    "a commit whose content was changed after signing has a bad signature",
    scoped(async (scope) => {
      const fx = await fixture(scope);
      const forged = await fx.tamper(await fx.commit({ ssh: fx.allowed.pub }));
      const verdict = await verifyCommit(fx.bare, forged, fx.ssh);
      assert.equal(verdict.ok, false);
      assert.match(!verdict.ok ? verdict.reason : "", new RegExp(`^commit ${forged.slice(0, 12)} has a bad signature`));
    }),
  );

  test(
    "the key decides, not the committer's e-mail: an allowed key signing as someone else passes as its principal",
    scoped(async (scope) => {
      const fx = await fixture(scope);
      const commit = await fx.commit(
        { ssh: fx.allowed.pub },
        { GIT_COMMITTER_EMAIL: "mallory@example.com", GIT_AUTHOR_EMAIL: "mallory@example.com" },
      );
      const verdict = await verifyCommit(fx.bare, commit, fx.ssh);
      assert.deepEqual(verdict, { ok: true, signer: `test@example.com (ED25519 key ${fx.allowed.fingerprint})` });
    }),
  );

  test(
    "an allowed_signers file that disappeared rejects the commit and names the file",
    scoped(async (scope) => {
      const fx = await fixture(scope);
      const commit = await fx.commit({ ssh: fx.allowed.pub });
      const gone = join(fx.root, "gone", "allowed_signers");
      assert.deepEqual(await verifyCommit(fx.bare, commit, { mode: "ssh", allowed_signers: gone }), {
        ok: false,
        reason: `allowed_signers file ${gone} is missing`,
      });
    }),
  );

  test(
    "a relative allowed_signers path is taken from the current directory",
    scoped(async (scope) => {
      const fx = await fixture(scope);
      const commit = await fx.commit({ ssh: fx.allowed.pub });
      const verdict = await verifyCommit(fx.bare, commit, {
        mode: "ssh",
        allowed_signers: relative(process.cwd(), fx.ssh.allowed_signers),
      });
      assert.equal(verdict.ok, true);
    }),
  );

  test(
    "inherited git config variables cannot swap in a more permissive allowed_signers file",
    scoped(async (scope) => {
      const fx = await fixture(scope);
      const commit = await fx.commit({ ssh: fx.stranger.pub });
      const permissive = join(fx.root, "permissive");
      await writeFile(permissive, `test@example.com ${fx.stranger.line}\n`);
      const saved = { ...process.env };
      Object.assign(process.env, {
        GIT_CONFIG_COUNT: "1",
        GIT_CONFIG_KEY_0: "gpg.ssh.allowedSignersFile",
        GIT_CONFIG_VALUE_0: permissive,
        GIT_CONFIG_PARAMETERS: `'gpg.ssh.allowedsignersfile'='${permissive}'`,
      });
      try {
        const verdict = await verifyCommit(fx.bare, commit, fx.ssh);
        assert.equal(verdict.ok, false);
        // The permissive file does work when named: the rejection above is the pinning, not a broken key.
        assert.equal((await verifyCommit(fx.bare, commit, { mode: "ssh", allowed_signers: permissive })).ok, true);
      } finally {
        for (const key of ["GIT_CONFIG_COUNT", "GIT_CONFIG_KEY_0", "GIT_CONFIG_VALUE_0", "GIT_CONFIG_PARAMETERS"]) {
          if (saved[key] === undefined) delete process.env[key];
          else process.env[key] = saved[key];
        }
      }
    }),
  );

  const malformed: [string, string][] = [
    ["a branch name", "main"],
    ["an option", "--help"],
    ["an abbreviated id", "0123456789ab"],
    ["upper-case hex", "0123456789ABCDEF0123456789ABCDEF01234567"],
    ["41 hex digits", `${"a".repeat(41)}`],
    ["a revision expression", `${"a".repeat(40)}^`],
  ];
  for (const [what, commit] of malformed) {
    test(`${what} is refused as a commit id before git runs (E_UNSAFE)`, async () => {
      await rejects(
        verifyCommit("/nonexistent", commit, { mode: "ssh", allowed_signers: "/nonexistent" }),
        "E_UNSAFE",
        /not a full commit id/,
      );
    });
  }

  test(
    "a commit that is not in the repository is an E_GIT error, not a verdict",
    scoped(async (scope) => {
      const fx = await fixture(scope);
      await fx.commit(undefined);
      await rejects(verifyCommit(fx.bare, "0".repeat(39) + "1", fx.ssh), "E_GIT", /cannot verify commit 000000000000/);
    }),
  );

  test(
    "an aborted signal stops the verification with E_ABORTED",
    scoped(async (scope) => {
      const fx = await fixture(scope);
      const commit = await fx.commit({ ssh: fx.allowed.pub });
      await rejects(verifyCommit(fx.bare, commit, fx.ssh, { signal: AbortSignal.abort() }), "E_ABORTED");
    }),
  );
});

describe("verifyCommit in gpg mode", () => {
  test(
    "a commit signed by a key of the keyring directory is verified and names the uid and fingerprint",
    scoped(async (scope) => {
      const fx = await fixture(scope);
      const key = await gpgKey(scope);
      const commit = await fx.commit({ gpg: key });
      const verdict = await verifyCommit(fx.bare, commit, { mode: "gpg", keyring: key.home });
      assert.deepEqual(verdict, { ok: true, signer: `Test <test@example.com> (key ${key.fingerprint})` });
    }),
  );

  for (const armor of [true, false]) {
    test(
      `a keyring file of exported public keys (${armor ? "armored" : "binary"}) works like the directory`,
      scoped(async (scope) => {
        const fx = await fixture(scope);
        const key = await gpgKey(scope);
        const file = join(fx.root, armor ? "keys.asc" : "keys.gpg");
        const exported = await exec(
          "gpg",
          ["--batch", "--output", file, ...(armor ? ["--armor"] : []), "--export", key.fingerprint],
          {
            env: { GNUPGHOME: key.home },
          },
        );
        assert.equal(exported.exitCode, 0);
        const commit = await fx.commit({ gpg: key });
        assert.deepEqual(await verifyCommit(fx.bare, commit, { mode: "gpg", keyring: file }), {
          ok: true,
          signer: `Test <test@example.com> (key ${key.fingerprint})`,
        });
      }),
    );
  }

  test(
    "a commit signed by a key the keyring does not hold is rejected as an unknown key",
    scoped(async (scope) => {
      const fx = await fixture(scope);
      const [trusted, stranger] = [await gpgKey(scope), await gpgKey(scope, "Stranger <stranger@example.com>")];
      const commit = await fx.commit({ gpg: stranger });
      assert.deepEqual(await verifyCommit(fx.bare, commit, { mode: "gpg", keyring: trusted.home }), {
        ok: false,
        reason: `commit ${commit.slice(0, 12)} is signed by an unknown key ${stranger.fingerprint}: keyring ${trusted.home} does not hold it`,
      });
    }),
  );

  test(
    "unsigned, SSH-signed and altered commits are rejected in gpg mode",
    scoped(async (scope) => {
      const fx = await fixture(scope);
      const key = await gpgKey(scope);
      const config: VerifyConfig = { mode: "gpg", keyring: key.home };
      const unsigned = await fx.commit(undefined);
      const ssh = await fx.commit({ ssh: fx.allowed.pub });
      const forged = await fx.tamper(await fx.commit({ gpg: key }));
      const reasons = await Promise.all(
        [unsigned, ssh, forged].map(async (c) => {
          const verdict = await verifyCommit(fx.bare, c, config);
          return verdict.ok ? "ok" : verdict.reason;
        }),
      );
      assert.equal(reasons[0], `commit ${unsigned.slice(0, 12)} is not signed`);
      assert.equal(reasons[1], `commit ${ssh.slice(0, 12)} is signed with an SSH key, but verify.mode is gpg`);
      assert.match(
        reasons[2]!,
        new RegExp(`^commit ${forged.slice(0, 12)} has a bad signature by [0-9A-F]{16} Test <test@example.com>`),
      );
    }),
  );

  test(
    "in ssh mode a gpg-signed commit is rejected even when this user's own GnuPG home holds its key",
    scoped(async (scope) => {
      const fx = await fixture(scope);
      const key = await gpgKey(scope);
      const commit = await fx.commit({ gpg: key });
      const saved = process.env.GNUPGHOME;
      process.env.GNUPGHOME = key.home;
      try {
        assert.deepEqual(await verifyCommit(fx.bare, commit, fx.ssh), {
          ok: false,
          reason: `commit ${commit.slice(0, 12)} is signed with an OpenPGP (gpg) key, but verify.mode is ssh`,
        });
      } finally {
        if (saved === undefined) delete process.env.GNUPGHOME;
        else process.env.GNUPGHOME = saved;
      }
    }),
  );
});

describe("checkVerifyConfig", () => {
  test(
    "accepts a readable allowed_signers file and a GnuPG home with a key",
    scoped(async (scope) => {
      const fx = await fixture(scope);
      const key = await gpgKey(scope);
      await checkVerifyConfig(fx.ssh);
      await checkVerifyConfig({ mode: "gpg", keyring: key.home });
    }),
  );

  const cases: [string, (root: string) => Promise<VerifyConfig>, RegExp][] = [
    ["ssh without allowed_signers", async () => ({ mode: "ssh" }), /^verify\.mode ssh needs verify\.allowed_signers/],
    [
      "ssh with a missing allowed_signers file",
      async (root) => ({ mode: "ssh", allowed_signers: join(root, "nope") }),
      /^verify\.allowed_signers: allowed_signers file \S+\/nope is missing$/,
    ],
    [
      "ssh with a directory for allowed_signers",
      async (root) => ({ mode: "ssh", allowed_signers: root }),
      /is not a file$/,
    ],
    [
      "ssh with an allowed_signers file of comments only",
      async (root) => {
        await writeFile(join(root, "empty"), "# nobody yet\n\n");
        return { mode: "ssh", allowed_signers: join(root, "empty") };
      },
      /lists no keys/,
    ],
    [
      "ssh with a keyring",
      async (root) => ({ mode: "ssh", allowed_signers: join(root, "allowed_signers"), keyring: root }),
      /^verify\.keyring is for mode gpg; with mode ssh set verify\.allowed_signers$/,
    ],
    ["gpg without keyring", async () => ({ mode: "gpg" }), /^verify\.mode gpg needs verify\.keyring/],
    [
      "gpg with a missing keyring",
      async (root) => ({ mode: "gpg", keyring: join(root, "nope") }),
      /^verify\.keyring: keyring \S+\/nope is missing$/,
    ],
    [
      "gpg with a keyring file that holds no key",
      async (root) => {
        await writeFile(join(root, "keys.asc"), "not a key\n");
        return { mode: "gpg", keyring: join(root, "keys.asc") };
      },
      /holds no OpenPGP public keys/,
    ],
    [
      "gpg with an empty GnuPG home",
      async (root) => {
        await mkdir(join(root, "gnupg"), { mode: 0o700 });
        return { mode: "gpg", keyring: join(root, "gnupg") };
      },
      /is a GnuPG home without public keys/,
    ],
    [
      "gpg with allowed_signers",
      async (root) => ({ mode: "gpg", keyring: root, allowed_signers: root }),
      /^verify\.allowed_signers is for mode ssh/,
    ],
    [
      "an unknown mode",
      async () => ({ mode: "x509" }) as unknown as VerifyConfig,
      /^verify\.mode must be "ssh" or "gpg", got "x509"$/,
    ],
  ];
  for (const [what, make, message] of cases) {
    test(
      `refuses ${what} with E_CONFIG`,
      scoped(async (scope) => {
        const root = await scope.tempDir("bc-gitops-verify-config-");
        await writeFile(
          join(root, "allowed_signers"),
          "test@example.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDummyKeyForTheSchemaOnly\n",
        );
        await rejects(checkVerifyConfig(await make(root)), "E_CONFIG", message);
      }),
    );
  }

  test(
    "a keyring that checkVerifyConfig refuses is a verdict, not an error, at verification time",
    scoped(async (scope) => {
      const fx = await fixture(scope);
      const commit = await fx.commit({ gpg: await gpgKey(scope) });
      const file = join(fx.root, "keys.asc");
      await writeFile(file, "not a key\n");
      const verdict = await verifyCommit(fx.bare, commit, { mode: "gpg", keyring: file });
      assert.equal(verdict.ok, false);
      assert.match(verdict.ok ? "" : verdict.reason, new RegExp(`^keyring ${file} holds no OpenPGP public keys`));
    }),
  );
});
