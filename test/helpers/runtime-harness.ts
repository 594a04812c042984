/**
 * The default runtime over a temp directory, as the runtime tests use it: a "gitops repo"
 * (`repo/code/<app>`, path sources), a `local_path`, and the logs and telemetry it produced;
 * and a liveness check of the processes they start.
 */
import assert from "node:assert/strict";
import { cp, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TestContext } from "node:test";
import { procStat } from "../../src/_proc.ts";
import type { Logger } from "../../src/logger.ts";
import { createDefaultRuntime, type DefaultRuntime, type DefaultRuntimeOptions } from "../../src/runtimes/default.ts";
import type { RuntimeContext } from "../../src/runtime.ts";
import type { TelemetryEvent } from "../../src/telemetry.ts";

/** A test's runtime and what it wrote; everything is stopped and deleted when the test ends. */
export interface RuntimeHarness {
  runtime: DefaultRuntime;
  /** The "gitops repo": apps under `code/<app>`. */
  repo: string;
  local: string;
  /** Every log line, `<level> <message>`. */
  logs: string[];
  events: TelemetryEvent[];
}

/** How {@link runtimeHarness} sets up the runtime. */
export interface RuntimeHarnessSetup {
  /** Prefix of the temp directory's name. */
  prefix: string;
  /** A directory copied to `repo/code` (fixture apps); none: the repo starts empty. */
  fixtures?: string;
  /**
   * Options of the runtime, over the harness's own (paths, logger, telemetry); gets the local path
   * and the logger so that drivers can be built on them.
   */
  options(base: { local: string; logger: Logger }): Partial<RuntimeContext & DefaultRuntimeOptions>;
}

/** Creates a {@link RuntimeHarness} for test `t`. */
export async function runtimeHarness(t: TestContext, setup: RuntimeHarnessSetup): Promise<RuntimeHarness> {
  const root = await mkdtemp(join(tmpdir(), setup.prefix));
  const repo = join(root, "repo");
  const local = join(root, "local");
  if (setup.fixtures !== undefined) await cp(setup.fixtures, join(repo, "code"), { recursive: true });
  const logs: string[] = [];
  // As the CLI's pretty logger shows them: the app a line is about leads it as `[app]`.
  const log = (level: string) => (message: string, fields?: Record<string, unknown>) =>
    void logs.push(`${level} ${typeof fields?.app === "string" ? `[${fields.app}] ` : ""}${message}`);
  const logger: Logger = { debug: log("debug"), info: log("info"), warn: log("warn"), error: log("error") };
  const events: TelemetryEvent[] = [];
  const runtime = createDefaultRuntime({
    localPath: local,
    repoDir: () => repo,
    logger,
    emit: (name, measurements = {}, metadata = {}) => events.push({ name, measurements, metadata }),
    ...setup.options({ local, logger }),
  });
  t.after(async () => {
    await runtime.stopAll();
    await rm(root, { recursive: true, force: true });
  });
  return { runtime, repo, local, logs, events };
}

/** Whether `pid` still runs (a zombie nobody reaps does not count); asserts it is a number. */
export async function alive(pid: number | undefined): Promise<boolean> {
  assert.equal(typeof pid, "number");
  const stat = await procStat(pid!);
  if (stat) return stat.state !== "Z";
  try {
    process.kill(pid!, 0);
    return true;
  } catch {
    return false;
  }
}
