/**
 * Commit signature verification (`verify` in the agent configuration): decides whether a commit of
 * the gitops repository carries a valid signature by an allowed SSH or OpenPGP key, so that the
 * reconciler applies verified commits only. The trust decision is made by git itself
 * (`git verify-commit`), with every input that could widen it pinned on the command line: no system
 * or user git config, the program of the configured mode only (the other formats run `false`), and
 * for gpg a private, throwaway GnuPG home that holds nothing but the configured public keys.
 */
import { constants } from "node:fs";
import type { Stats } from "node:fs";
import { access, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { homedir, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { FULL_SHA, runGit } from "./_git.ts";
import { GitopsError, messageOf } from "./errors.ts";
import { exec } from "./exec.ts";
import type { ExecResult } from "./exec.ts";
import { redact } from "./redact.ts";

/** The `verify` key of the agent configuration. */
export interface VerifyConfig {
  mode: "ssh" | "gpg";
  /** ssh: a file in ssh-keygen's ALLOWED SIGNERS format (`<principal> <key type> <base64 key>` per line). */
  allowed_signers?: string;
  /**
   * gpg: a GnuPG home directory (its public keys are used; it is only read), or a file of exported
   * public keys (`gpg --export [--armor] KEYID... > FILE`). Either way every key in it is trusted.
   */
  keyring?: string;
}

/** Options of {@link verifyCommit}. */
export interface VerifyOptions {
  /** Aborting kills the running git/gpg and throws `E_ABORTED`. */
  signal?: AbortSignal;
  /** Deadline of each git/gpg call (default 60 000 ms); on expiry `E_TIMEOUT` is thrown. */
  timeoutMs?: number;
}

/** The verdict of {@link verifyCommit}: who signed, or one line a person can act on. */
export type Verification = { ok: true; signer: string } | { ok: false; reason: string };

/**
 * On top of the agent's git environment (runGit): no system or user git config and no inherited
 * config parameters, so nothing but the `-c` settings below can widen the trust decision.
 */
const NO_CONFIG: Record<string, string | undefined> = {
  GIT_CONFIG_NOSYSTEM: "1",
  GIT_CONFIG_GLOBAL: "/dev/null",
  GIT_CONFIG: undefined,
  GIT_CONFIG_PARAMETERS: undefined,
  GIT_CONFIG_COUNT: undefined,
};

/**
 * The signature programs per mode. The format git uses is read from the signature itself, so the
 * programs of the other formats are `false`: a commit signed another way can never pass, whatever
 * keys this user's own ~/.gnupg happens to hold.
 */
const PROGRAMS = {
  ssh: [
    "gpg.format=ssh",
    "gpg.ssh.program=ssh-keygen",
    "gpg.program=false",
    "gpg.openpgp.program=false",
    "gpg.x509.program=false",
  ],
  gpg: [
    "gpg.format=openpgp",
    "gpg.program=gpg",
    "gpg.openpgp.program=gpg",
    "gpg.minTrustLevel=undefined",
    "gpg.ssh.program=false",
    "gpg.x509.program=false",
  ],
} as const;

/** Written into every throwaway GnuPG home: never start an agent or dirmngr, never fetch a key. */
const GPG_CONF = "no-autostart\nno-auto-key-retrieve\n";

/**
 * Checks that `commit` (in the bare repository `gitDir`) carries a valid signature by an allowed
 * key: for `ssh`, a key listed in `allowed_signers` (the principal is whatever that file names for
 * the key; git does not compare it with the committer's e-mail); for `gpg`, any key in `keyring`
 * (an expired or revoked key fails). Resolves with `{ ok: true, signer }` (`"<principal or uid>
 * (<key>)"`) or `{ ok: false, reason }`, e.g. `commit abc123456789 is not signed`, `… is signed by
 * an unknown key SHA256:…`, `allowed_signers file /x is missing`. A missing or unreadable key file
 * is a verdict too: it may be fixed at any time, so callers should not remember negative verdicts.
 * Throws `E_UNSAFE` for anything but a full hex commit id, `E_CONFIG` for a malformed `config`,
 * `E_GIT` (backoff) when the commit cannot be read from `gitDir`, `E_TIMEOUT`, `E_ABORTED`.
 */
export async function verifyCommit(
  gitDir: string,
  commit: string,
  config: VerifyConfig,
  options: VerifyOptions = {},
): Promise<Verification> {
  if (typeof commit !== "string" || !FULL_SHA.test(commit)) {
    const shown = JSON.stringify(redact(String(commit)));
    throw new GitopsError(`refusing to verify ${shown}: not a full commit id`, { code: "E_UNSAFE", retry: "stalled" });
  }
  const mode = modeOf(config);
  const dir = resolve(gitDir);
  const short = commit.slice(0, 12);
  const git = async (args: string[], env: Record<string, string> = {}): Promise<ExecResult> => {
    try {
      return await runGit(args, {
        ...runOptions(options, [0, 1]),
        cwd: dir,
        env: { ...NO_CONFIG, GIT_DIR: dir, ...env },
      });
    } catch (error) {
      if (!(error instanceof GitopsError) || error.code !== "E_EXEC") throw error;
      throw new GitopsError(redact(`cannot verify commit ${short} in ${dir}: ${error.message}`), {
        code: "E_GIT",
        retry: "backoff",
        cause: error,
        details: { commit, gitDir: dir },
      });
    }
  };

  const raw = await git(["cat-file", "commit", commit]);
  if (raw.exitCode !== 0)
    throw new GitopsError(`commit ${short} is not in ${dir}`, { code: "E_GIT", retry: "backoff", details: { commit } });
  const kind = signatureKind(raw.stdout, commit.length === 64 ? "gpgsig-sha256" : "gpgsig");
  if (kind === undefined) return { ok: false, reason: `commit ${short} is not signed` };
  if (kind !== mode)
    return { ok: false, reason: `commit ${short} is signed with ${KIND_NAMES[kind]}, but verify.mode is ${mode}` };

  // `-c` must come before the subcommand; given last, it beats every config file and variable.
  const pin = (settings: readonly string[]) => settings.flatMap((setting) => ["-c", setting]);
  const verify = ["verify-commit", "--raw", "--", commit];
  if (mode === "ssh") {
    const file = pathOf(config.allowed_signers);
    if (file === undefined) return { ok: false, reason: "verify.allowed_signers is not set" };
    const problem = await pathProblem("allowed_signers file", file, "file");
    if (problem !== undefined) return { ok: false, reason: problem };
    const result = await git([...pin(PROGRAMS.ssh), "-c", `gpg.ssh.allowedSignersFile=${file}`, ...verify]);
    return sshVerdict(result, short, file);
  }
  const keyring = pathOf(config.keyring);
  if (keyring === undefined) return { ok: false, reason: "verify.keyring is not set" };
  const problem = await pathProblem("keyring", keyring, "file or directory");
  if (problem !== undefined) return { ok: false, reason: problem };
  const prepared = await gnupgHome(keyring, options);
  if ("reason" in prepared) return { ok: false, reason: prepared.reason };
  try {
    const result = await git([...pin(PROGRAMS.gpg), ...verify], { GNUPGHOME: prepared.home });
    return gpgVerdict(result, short, keyring);
  } finally {
    await rm(prepared.home, { recursive: true, force: true });
  }
}

/**
 * Validates a `verify` configuration at start-up: `ssh` needs `allowed_signers`, a readable file
 * listing at least one key, plus `ssh-keygen` on PATH; `gpg` needs `keyring`, a readable GnuPG home
 * or key file holding at least one public key, plus `gpg` on PATH; the other mode's key is refused.
 * Relative paths are taken from the current directory, `~/` from the home directory. Throws
 * `E_CONFIG` (stalled) with a message naming the key and the fix.
 */
export async function checkVerifyConfig(config: VerifyConfig): Promise<void> {
  const fail = (message: string, cause?: unknown) =>
    new GitopsError(redact(message), { code: "E_CONFIG", retry: "stalled", cause });
  const mode = modeOf(config);
  const other = mode === "ssh" ? "keyring" : "allowed_signers";
  const own = mode === "ssh" ? "allowed_signers" : "keyring";
  if (config[other] !== undefined)
    throw fail(`verify.${other} is for mode ${mode === "ssh" ? "gpg" : "ssh"}; with mode ${mode} set verify.${own}`);
  if (mode === "ssh") {
    const file = pathOf(config.allowed_signers);
    if (file === undefined) {
      throw fail(
        "verify.mode ssh needs verify.allowed_signers: a file of `<email> <key type> <public key>` lines (see ALLOWED SIGNERS in ssh-keygen(1))",
      );
    }
    const problem = await pathProblem("allowed_signers file", file, "file");
    if (problem !== undefined) throw fail(`verify.allowed_signers: ${problem}`);
    const entries = (await readFile(file, "utf8"))
      .split("\n")
      .filter((line) => line.trim() !== "" && !line.trim().startsWith("#"));
    if (entries.length === 0)
      throw fail(`verify.allowed_signers: ${file} lists no keys, so no commit could ever be applied`);
    try {
      // Any exit status will do: this only proves the program is there (its usage exits 1).
      await exec("ssh-keygen", ["-?"], { allowExitCodes: [0, 1, 2, 255], timeoutMs: 10_000, env: { LC_ALL: "C" } });
    } catch (error) {
      throw fail(`verify.mode ssh needs ssh-keygen (OpenSSH 8.2 or later): ${messageOf(error)}`, error);
    }
    return;
  }
  const keyring = pathOf(config.keyring);
  if (keyring === undefined) {
    throw fail(
      "verify.mode gpg needs verify.keyring: a GnuPG home directory, or a file of public keys (gpg --export --armor KEYID > FILE)",
    );
  }
  const problem = await pathProblem("keyring", keyring, "file or directory");
  if (problem !== undefined) throw fail(`verify.keyring: ${problem}`);
  let prepared: { home: string } | { reason: string };
  try {
    prepared = await gnupgHome(keyring, { timeoutMs: 30_000 });
  } catch (error) {
    throw fail(`verify.mode gpg needs gpg (GnuPG 2): ${messageOf(error)}`, error);
  }
  if ("reason" in prepared) throw fail(`verify.keyring: ${prepared.reason}`);
  await rm(prepared.home, { recursive: true, force: true });
}

/** The mode of a config, or E_CONFIG: a malformed config is the caller's bug (the schema admits none). */
function modeOf(config: VerifyConfig): "ssh" | "gpg" {
  const mode = (config as Partial<VerifyConfig> | null | undefined)?.mode;
  if (mode === "ssh" || mode === "gpg") return mode;
  throw new GitopsError(`verify.mode must be "ssh" or "gpg", got ${JSON.stringify(mode)}`, {
    code: "E_CONFIG",
    retry: "stalled",
  });
}

/** An absolute path: `~` and `~/…` from the home directory, relative ones from the current directory. */
function pathOf(path: string | undefined): string | undefined {
  if (typeof path !== "string" || path.trim() === "") return undefined;
  if (path === "~") return homedir();
  return resolve(path.startsWith("~/") ? join(homedir(), path.slice(2)) : path);
}

/** Why `path` cannot serve as `label` (missing, wrong type, unreadable), or undefined. */
async function pathProblem(
  label: string,
  path: string,
  want: "file" | "file or directory",
): Promise<string | undefined> {
  let info: Stats;
  try {
    info = await stat(path);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    return code === "ENOENT" || code === "ENOTDIR"
      ? `${label} ${path} is missing`
      : `${label} ${path} cannot be read: ${messageOf(error)}`;
  }
  if (!info.isFile() && (want === "file" || !info.isDirectory())) return `${label} ${path} is not a ${want}`;
  try {
    await access(path, info.isDirectory() ? constants.R_OK | constants.X_OK : constants.R_OK);
  } catch {
    return `${label} ${path} is not readable by this user`;
  }
  return undefined;
}

/** exec options shared by every call of a verification. */
function runOptions(options: VerifyOptions, allowExitCodes: number[]) {
  return {
    timeoutMs: options.timeoutMs ?? 60_000,
    allowExitCodes,
    ...(options.signal ? { signal: options.signal } : {}),
  };
}

type Kind = "ssh" | "gpg" | "x509" | "unknown";
const KIND_NAMES: Record<Kind, string> = {
  ssh: "an SSH key",
  gpg: "an OpenPGP (gpg) key",
  x509: "an X.509 certificate",
  unknown: "an unrecognised kind of signature",
};

/**
 * The kind of the signature in the commit's `header` (the one git checks for the repository's hash
 * algorithm), recognised by its armor line as git does, or undefined when it has none.
 */
function signatureKind(raw: string, header: string): Kind | undefined {
  const end = raw.indexOf("\n\n");
  for (const line of (end < 0 ? raw : raw.slice(0, end)).split("\n")) {
    if (!line.startsWith(`${header} `)) continue;
    const armor = line.slice(header.length + 1).trim();
    if (armor.startsWith("-----BEGIN SSH SIGNATURE-----")) return "ssh";
    if (armor.startsWith("-----BEGIN PGP SIGNATURE-----") || armor.startsWith("-----BEGIN PGP MESSAGE-----"))
      return "gpg";
    if (armor.startsWith("-----BEGIN SIGNED MESSAGE-----")) return "x509";
    return "unknown";
  }
  return undefined;
}

/** ssh-keygen's output (through git) as a verdict. */
function sshVerdict(result: ExecResult, short: string, file: string): Verification {
  const output = `${result.stderr}\n${result.stdout}`;
  const good = /Good "git" signature for (\S+) with (\S+) key (\S+)/.exec(output);
  if (result.exitCode === 0) {
    return {
      ok: true,
      signer: good ? `${good[1]} (${good[2]} key ${good[3]})` : firstLines(output) || "an allowed SSH key",
    };
  }
  const anonymous = /Good "git" signature with (\S+) key (\S+)/.exec(output);
  if (anonymous && /No principal matched/.test(output)) {
    return {
      ok: false,
      reason: `commit ${short} is signed by an unknown key ${anonymous[2]} (${anonymous[1]}): ${file} does not allow it`,
    };
  }
  if (/incorrect signature|Signature verification failed/i.test(output)) {
    return {
      ok: false,
      reason: `commit ${short} has a bad signature (the commit or its signature was altered): ${firstLines(output)}`,
    };
  }
  return {
    ok: false,
    reason: `commit ${short}'s signature was not accepted: ${firstLines(output) || `git exited ${result.exitCode}`}`,
  };
}

/** gpg's status lines (git verify-commit --raw) as a verdict. */
function gpgVerdict(result: ExecResult, short: string, keyring: string): Verification {
  const output = `${result.stderr}\n${result.stdout}`;
  const status = (word: string) => new RegExp(`^\\[GNUPG:\\] ${word} (.*)$`, "m").exec(output)?.[1]?.trim().split(" ");
  const keyAndUid = (fields: string[]) => `${fields[0]}${fields.length > 1 ? ` ${fields.slice(1).join(" ")}` : ""}`;
  if (result.exitCode === 0) {
    const good = status("GOODSIG");
    const fingerprint = status("VALIDSIG")?.at(-1);
    const uid = good && good.length > 1 ? good.slice(1).join(" ") : undefined;
    const key = fingerprint ?? good?.[0] ?? "unknown key";
    return { ok: true, signer: uid ? `${uid} (key ${key})` : `key ${key}` };
  }
  const missing = status("ERRSIG");
  if (missing && (missing[5] === "9" || status("NO_PUBKEY"))) {
    return {
      ok: false,
      reason: `commit ${short} is signed by an unknown key ${missing[6] ?? missing[0]}: keyring ${keyring} does not hold it`,
    };
  }
  const bad = status("BADSIG");
  if (bad)
    return {
      ok: false,
      reason: `commit ${short} has a bad signature by ${keyAndUid(bad)} (the commit or its signature was altered)`,
    };
  for (const [word, what] of REFUSED_GPG) {
    const fields = status(word);
    if (fields) return { ok: false, reason: `commit ${short} is signed by ${keyAndUid(fields)}, ${what}` };
  }
  const said = firstLines(
    output
      .split("\n")
      .filter((line) => !line.startsWith("[GNUPG:]"))
      .join("\n"),
  );
  return {
    ok: false,
    reason: `commit ${short}'s signature was not accepted: ${said || `git exited ${result.exitCode}`}`,
  };
}

/** gpg status words for a sound signature that still must not pass. */
const REFUSED_GPG = [
  ["EXPKEYSIG", "whose key has expired"],
  ["REVKEYSIG", "whose key was revoked"],
  ["EXPSIG", "whose signature has expired"],
] as const;

/** The first few non-empty lines of `text`, joined into one short line. */
function firstLines(text: string): string {
  const lines = text
    .split("\n")
    .map((line) => line.trim())
    .filter(Boolean)
    .slice(0, 3)
    .join("; ");
  return redact(lines.length > 300 ? `${lines.slice(0, 297)}...` : lines);
}

/**
 * A new GnuPG home in the temp directory holding exactly the public keys of `keyring` (a GnuPG
 * home is only read, through `gpg --export`; a file is imported), so the operator's gpg.conf,
 * trust database and keyservers play no part and a read-only keyring works. The caller removes
 * it. Resolves with a reason when the keyring holds no public key; throws when gpg cannot run.
 */
async function gnupgHome(keyring: string, options: VerifyOptions): Promise<{ home: string } | { reason: string }> {
  const home = await mkdtemp(join(tmpdir(), "bc-gitops-gnupg-"));
  const gpg = (args: string[], input?: string) =>
    exec("gpg", ["--batch", "--no-tty", "--no-autostart", ...args], {
      ...runOptions(options, [0, 2]),
      env: { LC_ALL: "C", GNUPGHOME: home },
      ...(input === undefined ? {} : { input }),
    });
  try {
    await writeFile(join(home, "gpg.conf"), GPG_CONF, { mode: 0o600 });
    let imported: ExecResult;
    if ((await stat(keyring)).isDirectory()) {
      const exported = await gpg(["--homedir", keyring, "--no-options", "--armor", "--export"]);
      if (exported.stdout.trim() === "")
        return await none(home, `keyring ${keyring} is a GnuPG home without public keys`);
      imported = await gpg(["--homedir", home, "--status-fd=1", "--import"], exported.stdout);
    } else {
      imported = await gpg(["--homedir", home, "--status-fd=1", "--import", "--", keyring]);
    }
    if (!/^\[GNUPG:\] IMPORT_OK /m.test(imported.stdout)) {
      return await none(
        home,
        `keyring ${keyring} holds no OpenPGP public keys (export them with gpg --export --armor KEYID > FILE, or name a GnuPG home directory)`,
      );
    }
    return { home };
  } catch (error) {
    await rm(home, { recursive: true, force: true });
    throw error;
  }
}

async function none(home: string, reason: string): Promise<{ reason: string }> {
  await rm(home, { recursive: true, force: true });
  return { reason };
}
