/**
 * Turning a spec's env into the values an app gets, on the host, at deploy and reconfigure: the
 * secrets file decrypted (its top-level keys join `env`) and host references read. Also the
 * per-tick digests of host references, so a changed file or variable reconfigures the app like any
 * env change, without the value ever being stored.
 *
 * Digests: keys of the secrets file are digested from their encrypted form (public in git). A host
 * reference's value is digested with HMAC-SHA-256 under a random 32-byte key kept in
 * `<local_path>/secrets.key` (mode 0600), never a plain hash: a plain SHA-256 of a short secret (a
 * PIN, a dictionary password) is reversed by guessing, and state.json and the API show digests.
 *
 * Only the runtime ever sees a resolved spec; state.json, the journal, status, events and `plan`
 * keep the spec as written. Every resolved string of 6 characters or more is registered with
 * `redact`, so an app error that quotes one is masked in logs and status.
 */
import { createHash, createHmac, randomBytes } from "node:crypto";
import { chmod, mkdir, readdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { GitopsError } from "../errors.ts";
import { registerSecret } from "../redact.ts";
import type { AppSpec } from "../spec.ts";
import { loadIdentities, type AgeIdentity } from "./age-keys.ts";
import { hasRefs, readRef, refProblems, refsOf } from "./env-refs.ts";
import { decryptSopsFile, formatOfFile, parseSopsFile, SopsError } from "./sops.ts";
import { plainValue } from "./sops-tree.ts";
import { keyDigests } from "./secrets-file.ts";

/** Options of a {@link SecretResolver}. */
export interface SecretResolverOptions {
  /** Config `age_key_file`. */
  ageKeyFile?: string | undefined;
  /** `<local_path>`: where the digest key lives. Without it the key lives in memory only (digests change per process). */
  localPath?: string | undefined;
  /** The checkout the current specs were read from (secrets files are read from it). */
  repoDir: () => string | undefined;
  /** The environment `from_env` and the age key variables are read from (default `process.env`). */
  env?: Readonly<Record<string, string | undefined>>;
  /** Where identities come from (default: {@link loadIdentities} with `ageKeyFile` and `env`). */
  identities?: () => Promise<readonly AgeIdentity[]>;
}

/** Decrypted secrets files kept for re-use, by the digests of their keys (a few apps, a few versions). */
const CACHE_SIZE = 32;

/** Resolves and digests secrets for one agent. */
export class SecretResolver {
  readonly #o: SecretResolverOptions;
  readonly #env: Readonly<Record<string, string | undefined>>;
  #digestKey: Promise<Uint8Array> | undefined;
  readonly #decrypted = new Map<string, Record<string, unknown>>();
  /** The last stamped copy of each loaded spec object. */
  readonly #stamped = new WeakMap<AppSpec, AppSpec>();

  constructor(options: SecretResolverOptions) {
    this.#o = options;
    this.#env = options.env ?? process.env;
  }

  /**
   * `spec` with the digests of its host references added to `secrets.keys` (what the planner compares);
   * the same object when it has none. A reference that cannot be read now digests as `unavailable`, so
   * the next apply fails on that app with the reason.
   */
  async stamp<S extends AppSpec>(spec: S): Promise<S> {
    const refs = Object.entries(refsOf(spec.env));
    if (refs.length === 0) return spec;
    const keys = { ...(spec.secrets?.keys ?? {}) };
    for (const [key, ref] of refs) {
      try {
        keys[key] = await this.#digest(key, await readRef(key, ref, this.#env));
      } catch {
        keys[key] = "unavailable";
      }
    }
    // The same object while nothing changed: the planner compares unchanged specs by identity, and
    // state.json rewrites only replaced entries.
    const previous = this.#stamped.get(spec);
    if (previous && JSON.stringify(previous.secrets?.keys) === JSON.stringify(keys)) return previous as S;
    const stamped = { ...spec, secrets: { ...spec.secrets, keys } };
    this.#stamped.set(spec, stamped);
    return stamped;
  }

  /**
   * {@link stamp} over every app of a load result: a copy where some spec was stamped (the
   * loader's specs are shared and stay as they are), else `load` itself.
   */
  async stampAll<L extends { apps: readonly { spec: AppSpec; file: string }[] }>(load: L): Promise<L> {
    // `load` itself while no app has a host reference (most ticks of most repositories): a tick
    // of 1000 apps then costs one look at each env, not 1000 copies.
    let apps: { spec: AppSpec; file: string }[] | undefined;
    for (let i = 0; i < load.apps.length; i++) {
      const app = load.apps[i]!;
      const spec = hasRefs(app.spec.env) ? await this.stamp(app.spec) : app.spec;
      if (spec !== app.spec) apps ??= load.apps.slice(0, i);
      apps?.push(spec === app.spec ? app : { ...app, spec });
    }
    return apps ? { ...load, apps } : load;
  }

  /**
   * The spec an app is started with: the secrets file's keys and the host references' values in
   * `env`, `secrets` dropped. The same object when there is nothing to resolve. Throws a
   * {@link GitopsError} `E_SECRETS` naming the file or key (never a value): retried with backoff
   * when the fix is on the host (a missing key, file or variable), stalled until a new commit when
   * the file itself is wrong (tampered, malformed).
   */
  async resolve(spec: AppSpec): Promise<AppSpec> {
    const refs = refsOf(spec.env);
    if (!spec.secrets?.file && Object.keys(refs).length === 0) return spec;
    const problem = refProblems(spec.env)[0];
    if (problem) throw new GitopsError(`${problem.path}: ${problem.message}`, { code: "E_SPEC", retry: "stalled" });
    const env: Record<string, unknown> = { ...spec.env };
    if (spec.secrets?.file) {
      for (const [key, value] of Object.entries(await this.#secretsFile(spec))) {
        if (Object.hasOwn(spec.env, key))
          throw new GitopsError(`${spec.secrets.file}: ${key} is also set in env; remove one of them`, {
            code: "E_SPEC",
            retry: "stalled",
          });
        env[key] = value;
      }
    }
    for (const [key, ref] of Object.entries(refs)) env[key] = await readRef(key, ref, this.#env);
    for (const [key, value] of Object.entries(env)) if (key in refs || spec.secrets?.keys[key]) register(value);
    const { secrets: _, ...rest } = spec;
    return { ...rest, env } as AppSpec;
  }

  /** The decrypted top-level values of the spec's secrets file, checked to be the version the spec was read with. */
  async #secretsFile(spec: AppSpec): Promise<Record<string, unknown>> {
    const secrets = spec.secrets!;
    const file = secrets.file!;
    const wanted = signature(secrets.keys);
    const cached = this.#decrypted.get(wanted);
    if (cached) return cached;
    const repoDir = this.#o.repoDir();
    const fail = (message: string, retry: "stalled" | "backoff") =>
      new GitopsError(`${file}: ${message}`, { code: "E_SECRETS", retry });
    let text = repoDir ? await readFile(join(repoDir, file), "utf8").catch(() => undefined) : undefined;
    // The version this spec was read with, when the checkout holds another one (a restarted agent
    // restoring an app whose newer secrets file failed): the ciphertext kept from an earlier apply.
    const kept = this.#keptPath(secrets.sha256);
    if ((text === undefined || sha256(text) !== secrets.sha256) && kept)
      text = (await readFile(kept, "utf8").catch(() => undefined)) ?? text;
    if (text === undefined)
      throw fail(repoDir ? "cannot read it in the checkout" : "the repository has not been read yet", "backoff");
    try {
      const parsed = parseSopsFile(text, formatOfFile(file)!);
      if (signature(keyDigests(parsed)) !== wanted)
        throw fail(
          "it changed since this version of the app was read; the next commit's values are applied with it",
          "stalled",
        );
      const identities = this.#o.identities
        ? await this.#o.identities()
        : await loadIdentities({ ageKeyFile: this.#o.ageKeyFile, env: this.#env });
      const tree = await decryptSopsFile(parsed, identities);
      const values = Object.fromEntries(tree.entries.map(([key, node]) => [key, plainValue(node)]));
      // Keep the ciphertext (public in git anyway) so this version can be started again offline.
      if (kept && sha256(text) === secrets.sha256) await this.#keep(kept, text);
      if (this.#decrypted.size >= CACHE_SIZE) this.#decrypted.delete(this.#decrypted.keys().next().value!);
      this.#decrypted.set(wanted, values);
      return values;
    } catch (error) {
      if (error instanceof GitopsError) throw error;
      if (error instanceof SopsError) throw fail(error.message, error.kind === "no-key" ? "backoff" : "stalled");
      // A key file that cannot be read or parsed: the host's to fix.
      throw fail((error as Error).message, "backoff");
    }
  }

  /** Where the ciphertext of the secrets file with content hash `sha` is kept (`<local_path>/secrets/`). */
  #keptPath(sha: string | undefined): string | undefined {
    const dir = this.#o.localPath;
    return dir && sha && /^[0-9a-f]{64}$/.test(sha) ? join(dir, "secrets", sha) : undefined;
  }

  async #keep(path: string, text: string): Promise<void> {
    try {
      await mkdir(dirname(path), { recursive: true, mode: 0o700 });
      const names = await readdir(dirname(path));
      // A few versions per app are enough to restart what ran; beyond that, drop one.
      if (names.length >= CACHE_SIZE * 4) await rm(join(dirname(path), names.sort()[0]!), { force: true });
      await writeFile(`${path}.${process.pid}.tmp`, text, { mode: 0o600 });
      await rename(`${path}.${process.pid}.tmp`, path);
    } catch {
      // Only an optimisation for restarts: a read-only or full disk must not fail the app.
    }
  }

  /** `hmac-sha256:<hex>` of a reference's value, under the host's digest key; the env key is mixed in. */
  async #digest(key: string, value: string): Promise<string> {
    const secret = await (this.#digestKey ??= this.#loadDigestKey());
    return `hmac-sha256:${createHmac("sha256", secret).update(`${key}\0${value}`).digest("hex")}`;
  }

  async #loadDigestKey(): Promise<Uint8Array> {
    const dir = this.#o.localPath;
    if (!dir) return randomBytes(32);
    const path = join(dir, "secrets.key");
    try {
      return Buffer.from((await readFile(path, "utf8")).trim(), "hex");
    } catch {
      const key = randomBytes(32);
      try {
        await writeFile(path, `${key.toString("hex")}\n`, { mode: 0o600, flag: "wx" });
        await chmod(path, 0o600);
        return key;
      } catch {
        // Another agent process wrote it first, or the directory is read-only: use what is there, else memory.
        return readFile(path, "utf8").then(
          (t) => Buffer.from(t.trim(), "hex"),
          () => key,
        );
      }
    }
  }
}

/**
 * `bc-gitops plan`'s stand-in for {@link SecretResolver.stamp}: plan runs outside the agent (another
 * environment, maybe another user), so it cannot read host references as the agent would. It keeps
 * the deployed digest of each reference that is unchanged as written: a changed reference shows as
 * an env change, a changed value behind the same reference only in the agent's next tick.
 */
export function stampFromDeployed(spec: AppSpec, deployed: AppSpec | undefined): AppSpec {
  const refs = Object.keys(refsOf(spec.env));
  if (refs.length === 0) return spec;
  const keys = { ...(spec.secrets?.keys ?? {}) };
  for (const key of refs) {
    const same = deployed && JSON.stringify(deployed.env[key]) === JSON.stringify(spec.env[key]);
    keys[key] = (same && deployed.secrets?.keys[key]) || "not resolved by plan";
  }
  return { ...spec, secrets: { ...spec.secrets, keys } };
}

/** The keys of a secrets file and their digests, as one comparable string. */
function signature(keys: Readonly<Record<string, string>>): string {
  const sops = Object.entries(keys)
    .filter(([, d]) => d.startsWith("sops:"))
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return createHash("sha256").update(JSON.stringify(sops)).digest("hex");
}

function sha256(text: string): string {
  return createHash("sha256").update(text).digest("hex");
}

function register(value: unknown): void {
  if (typeof value === "string") {
    if (value.length >= 6) registerSecret(value);
  } else if (value !== null && typeof value === "object") for (const v of Object.values(value)) register(v);
}
