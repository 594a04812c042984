/**
 * An app's npm dependencies across its revisions (`<workspace>/<app>/<revision>/node_modules`).
 * They are installed once per set of dependency manifests, in the revision that first needs them
 * (their home); every later revision with the same manifests gets `node_modules` as a relative
 * symlink into that home. Runtimes identify a module by its real path, so a copy (even hard
 * links) in a new directory would be evaluated, and kept in memory, again by a hot reload; the
 * link makes every revision load the files already loaded. Pruning keeps the homes of the
 * revisions it keeps ({@link withHomes}).
 */
import { createHash } from "node:crypto";
import { readFile, realpath, symlink } from "node:fs/promises";
import { basename, join, relative, sep } from "node:path";
import { dependencyInstaller } from "./_platform.ts";
import { isDir, readJson } from "./_tree.ts";
import { GitopsError, messageOf } from "./errors.ts";
import { exec } from "./exec.ts";
import type { Logger } from "./logger.ts";
import { redact } from "./redact.ts";
import type { AppSpec } from "./spec.ts";
import type { Emit } from "./telemetry.ts";

/** What decides an install's result: when none of it changed, an earlier revision's node_modules is reused. */
const LOCKFILES = [
  "package-lock.json",
  "npm-shrinkwrap.json",
  "bun.lock",
  "bun.lockb",
  "deno.lock",
  "yarn.lock",
  "pnpm-lock.yaml",
];
const DEP_FIELDS = [
  "dependencies",
  "optionalDependencies",
  "peerDependencies",
  "bundleDependencies",
  "bundledDependencies",
  "overrides",
  "resolutions",
  "trustedDependencies",
  "workspaces",
];

/**
 * The key of the dependencies declared by the package at `root`: a hash of the installer, the
 * registry, package.json's dependency fields and the lockfiles; `null` when it declares none. Two
 * revisions with the same key get the same `node_modules`.
 */
export async function dependencyKey(spec: AppSpec, root: string): Promise<string | null> {
  const pkg = await readJson(join(root, "package.json"));
  const declared = { ...record(pkg?.dependencies), ...record(pkg?.optionalDependencies) };
  if (Object.keys(declared).length === 0) return null;
  const registry = registryOf(spec);
  const manifest = JSON.stringify([
    dependencyInstaller(registry).name,
    registry ?? "",
    DEP_FIELDS.map((f) => pkg?.[f] ?? null),
  ]);
  const hash = createHash("sha256").update(manifest);
  for (const file of LOCKFILES) hash.update(`\0${file}\0`).update(await readFile(join(root, file)).catch(() => ""));
  return hash.digest("hex");
}

/**
 * Makes `<root>/node_modules` a symlink to the home of the first revision in `candidates` (names
 * in `appDir` whose dependencies have the same key, in order of preference) whose packages are
 * still there, as `../<home>/node_modules`: relative to `<appDir>/<revision>`, where `root` is
 * renamed once complete (until then the link dangles). Returns the home, or `undefined` when no
 * candidate has one (then the caller installs). The revision being built is never its own home.
 */
export async function linkDependencies(
  appDir: string,
  root: string,
  revision: string,
  candidates: readonly string[],
  logger: Logger,
): Promise<string | undefined> {
  for (const candidate of candidates) {
    const home = await homeOf(appDir, candidate);
    if (home === undefined || home === revision || !(await isDir(join(appDir, home, "node_modules")))) continue;
    try {
      await symlink(join("..", home, "node_modules"), join(root, "node_modules"), "dir");
      logger.debug(`${basename(appDir)}: dependencies unchanged, linking node_modules of revision ${home}`);
      return home;
    } catch (error) {
      logger.debug(`${basename(appDir)}: cannot link node_modules of ${home}: ${messageOf(error)}`);
    }
  }
  return undefined;
}

/** What {@link installDependencies} reports to and how long it may take. */
export interface InstallOptions {
  logger: Logger;
  emit: Emit;
  timeoutMs: number;
  signal?: AbortSignal | undefined;
}

/** Installs the dependencies of the package at `root` with the installer of the runtime the agent runs on (`bc_gitops:deps:start|stop`). */
export async function installDependencies(spec: AppSpec, root: string, options: InstallOptions): Promise<void> {
  const installer = dependencyInstaller(registryOf(spec));
  const meta = { app: spec.name, version: spec.version };
  options.emit("bc_gitops:deps:start", {}, meta);
  const started = performance.now();
  try {
    const run = {
      cwd: root,
      env: installer.env,
      timeoutMs: options.timeoutMs,
      ...(options.signal ? { signal: options.signal } : {}),
    };
    const result = await exec(installer.command, installer.args, run);
    options.logger.debug(
      `${spec.name}: ${installer.name} install\n${`${result.stdout}\n${result.stderr}`.trim()}`,
      meta,
    );
    options.emit("bc_gitops:deps:stop", { duration_ms: performance.now() - started }, meta);
  } catch (error) {
    options.emit(
      "bc_gitops:deps:stop",
      { duration_ms: performance.now() - started },
      { ...meta, error: messageOf(error) },
    );
    if (error instanceof GitopsError && error.code === "E_ABORTED") throw error;
    const message = `installing the dependencies of ${spec.name} with ${installer.name} failed: ${messageOf(error)}`;
    throw new GitopsError(redact(message), {
      code: "E_RUNTIME",
      retry: "backoff",
      cause: error,
      details: error instanceof GitopsError ? error.details : {},
    });
  }
}

/**
 * `keep` (revision names in `appDir`) plus the homes of their `node_modules`, so pruning never
 * deletes packages a kept revision links to.
 */
export async function withHomes(appDir: string, keep: readonly string[]): Promise<string[]> {
  const out = new Set(keep);
  for (const revision of keep) {
    const home = await homeOf(appDir, revision);
    if (home !== undefined) out.add(home);
  }
  return [...out];
}

/**
 * The revision in `appDir` that really holds `revision`'s `node_modules` (itself when they are
 * its own), or `undefined` when it has none or they lead anywhere but `<appDir>/<home>/node_modules`.
 */
async function homeOf(appDir: string, revision: string): Promise<string | undefined> {
  const real = await realpath(join(appDir, revision, "node_modules")).catch(() => undefined);
  if (real === undefined) return undefined;
  const rel = relative(await realpath(appDir).catch(() => appDir), real);
  const home = rel.split(sep)[0];
  return home && home !== ".." && rel === join(home, "node_modules") ? home : undefined;
}

const registryOf = (spec: AppSpec): string | undefined =>
  spec.source.type === "npm" ? spec.source.registry : undefined;

const record = (v: unknown): Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : {};
