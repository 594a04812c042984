/**
 * `bc-gitops demo`: a self-contained tour on a throwaway local gitops repository (no network
 * beyond loopback). It scaffolds the example app, runs a real agent with the default runtime, and
 * commits a deploy, a version bump (upgrade), an env change (reconfigure), a same-version code
 * change (hot reload) and a removal, reporting each step with timings; then it cleans up.
 */
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { connect, createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createAgent } from "./agent.ts";
import { exec } from "./exec.ts";
import type { Logger } from "./logger.ts";
import type { TickResult } from "./reconciler.ts";
import { gitIdentityEnv, scaffold } from "./scaffold.ts";

/** One step of the tour, reported when it starts (`result` absent) and when it ends. */
export interface DemoStep {
  index: number;
  total: number;
  title: string;
  /** What was committed for this step. */
  change: string;
  commit?: string;
  result?: TickResult;
  /** What the app answered after the step (or why it did not). */
  answer?: string;
  /** Wall time from the commit to the answer, in ms. */
  ms?: number;
}

/** Options of {@link runDemo}. */
export interface DemoOptions {
  onStep(step: DemoStep): void;
  /** Where the agent logs (default: nowhere). */
  logger?: Logger;
  /** Keep the temp directory for inspection. */
  keep?: boolean;
}

/** Runs the tour; resolves with the temp directory used (already deleted unless `keep`). */
export async function runDemo(options: DemoOptions): Promise<{ dir: string; steps: DemoStep[] }> {
  const dir = await mkdtemp(join(tmpdir(), "bc-gitops-demo-"));
  const repo = join(dir, "gitops");
  const port = await freePort();
  const steps: DemoStep[] = [];
  await scaffold(repo, port);
  const env = await gitIdentityEnv(repo);
  const agent = createAgent({
    repoUrl: repo,
    localPath: join(dir, "state"),
    reconcileInterval: "1h",
    listen: "off",
    logger: options.logger,
  });
  const url = `http://127.0.0.1:${port}/?name=demo`;

  const plan: Array<{ title: string; change: string; edit?: () => Promise<void> }> = [
    { title: "deploy", change: "initial commit: apps/hello/app.yaml (version 1.0.0) and its code" },
    {
      title: "upgrade",
      change: 'version: "1.0.0" -> "1.1.0"',
      edit: () => replaceIn(join(repo, "apps/hello/app.yaml"), 'version: "1.0.0"', 'version: "1.1.0"'),
    },
    {
      title: "reconfigure",
      change: "env.greeting: Hello -> Howdy",
      edit: () => replaceIn(join(repo, "apps/hello/app.yaml"), "greeting: Hello", "greeting: Howdy"),
    },
    {
      title: "hot reload",
      change: "code/hello/greet.js changed, version unchanged",
      edit: () =>
        replaceIn(
          join(repo, "code/hello/greet.js"),
          "return `${greeting}, ${name}!`;",
          "return `${greeting}, ${name}! (hot-reloaded, same version)`;",
        ),
    },
    { title: "remove", change: "apps/hello/ deleted", edit: () => rm(join(repo, "apps/hello"), { recursive: true }) },
  ];
  try {
    for (const [i, step] of plan.entries()) {
      const report: DemoStep = { index: i + 1, total: plan.length, title: step.title, change: step.change };
      options.onStep(report);
      if (step.edit) {
        await step.edit();
        await exec("git", ["add", "-A"], { cwd: repo });
        await exec("git", ["commit", "-q", "-m", `demo: ${step.title}`], { cwd: repo, env });
      }
      report.commit = (await exec("git", ["rev-parse", "HEAD"], { cwd: repo })).stdout.trim();
      const started = performance.now();
      report.result = i === 0 ? await agent.start() : await agent.reconcile();
      report.answer = await ask(url, { removed: step.title === "remove" });
      report.ms = Math.round(performance.now() - started);
      steps.push(report);
      options.onStep(report);
    }
  } finally {
    await agent.stop();
    if (!options.keep) await rm(dir, { recursive: true, force: true });
  }
  return { dir, steps };
}

/** What the app answered; after its removal a refused connection is the expected outcome, and said so. */
async function ask(url: string, options: { removed: boolean }): Promise<string> {
  try {
    const response = await fetch(url, { signal: AbortSignal.timeout(5000) });
    const answer = `${response.status} ${(await response.text()).trim()}`;
    return options.removed ? `${answer} (still answering after the remove)` : answer;
  } catch (error) {
    // fetch's errors differ per runtime (Deno gives no code): a plain TCP connect tells a closed port.
    if (options.removed && (await portClosed(new URL(url)))) return "the port is closed: removed";
    const code = (error as { cause?: { code?: string } }).cause?.code ?? (error as { code?: string }).code;
    return `no answer (${code ?? (error as Error).message})`;
  }
}

async function replaceIn(file: string, from: string, to: string): Promise<void> {
  const text = await readFile(file, "utf8");
  if (!text.includes(from)) throw new Error(`demo: ${file} does not contain ${JSON.stringify(from)}`);
  await writeFile(file, text.replace(from, to));
}

/** Whether a TCP connection to the URL's host and port is refused. */
function portClosed(url: URL): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: url.hostname, port: Number(url.port) });
    socket.setTimeout(5000, () => socket.destroy(new Error("timeout")));
    socket.once("connect", () => (socket.destroy(), resolve(false)));
    socket.once("error", (error: NodeJS.ErrnoException) => resolve(error.code === "ECONNREFUSED"));
  });
}

/** A port nothing listens on right now (bound to 0, read, released). */
async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() =>
        address && typeof address === "object" ? resolve(address.port) : reject(new Error("no port")),
      );
    });
  });
}
