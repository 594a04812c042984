/**
 * A stand-in agent process for default.test.ts: test runners treat an uncaught error as a failure
 * of whatever test is running, so "an embedded app's async error does not kill the agent" is
 * checked in a process of its own. Usage: crash-host.ts <localPath> <repoDir> <throw|reject>.
 * Prints one JSON line with what it saw and exits 0 if it lived to the end.
 */
import { AppSpec } from "../../src/spec.ts";
import { createDefaultRuntime } from "../../src/runtimes/default.ts";
import type { Logger } from "../../src/logger.ts";

const [localPath, repoDir, kind] = process.argv.slice(2) as [string, string, string];
const logs: string[] = [];
const log = (level: string) => (message: string, fields?: Record<string, unknown>) =>
  void logs.push(`${level} ${typeof fields?.app === "string" ? `[${fields.app}] ` : ""}${message}`);
const logger: Logger = { debug: log("debug"), info: log("info"), warn: log("warn"), error: log("error") };
const runtime = createDefaultRuntime({ localPath, repoDir: () => repoDir, logger, stopTimeoutMs: 2000 });

const spec = (name: string, code: string, env: Record<string, unknown>) =>
  AppSpec.parse({ name, version: "1.0.0", source: { type: "path", path: `code/${code}` }, env: { port: 0, ...env } });
const answer = async (port: unknown) =>
  (await fetch(`http://127.0.0.1:${port}/`, { signal: AbortSignal.timeout(5000) })).json();
const until = async (what: string, ok: () => Promise<boolean>) => {
  const deadline = Date.now() + 10_000;
  while (!(await ok())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
};

const bystander = await runtime.deploy(spec("bystander", "rt-fetch", {}));
await runtime.deploy(spec("crasher", "rt-server", { crash_after: 50, crash_kind: kind }));
await until("the crash", async () => (await runtime.getCurrentState()).crasher?.status === "failed");
const crashed = (await runtime.getCurrentState()).crasher;
const bystanderAnswer = await answer(bystander.port);
const restarted = await runtime.restart(spec("crasher", "rt-server", {}));
const restartedAnswer = await answer(restarted.port);

// An error with no app's code on its stack is reported, and nothing is marked failed.
setTimeout(() => {
  throw new Error("thrown by the host itself");
}, 0);
await until("the host's own error to be logged", async () => logs.some((l) => l.includes("thrown by the host itself")));
const after = await runtime.getCurrentState();

await runtime.stopAll();
console.log(JSON.stringify({ crashed, bystanderAnswer, restarted, restartedAnswer, after, logs }));
