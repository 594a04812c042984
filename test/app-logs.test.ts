import { test } from "node:test";
import assert from "node:assert/strict";
import { appendFile, mkdir, rename, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import type { TestContext } from "node:test";
import { createAgent } from "../src/agent.ts";
import { AppLogs, readTail } from "../src/app-logs.ts";
import { spawnProcess } from "../src/exec.ts";
import { cliCommand, runCli } from "./helpers/cli.ts";
import { code, until } from "./helpers/e2e.ts";
import { gitopsRepo } from "./helpers/gitops-repo.ts";
import { tempDir } from "./helpers/tmp.ts";

const TOKEN = "logs-token-0123456";
const SECRET = "chatty-s3cret-value";

test("the tail of a log file is its last lines, read from the end, whatever the chunk boundaries", async (t) => {
  const dir = await tempDir(t);
  const file = join(dir, "app.log");
  // Lines of uneven lengths over several 64 KiB chunks.
  const lines = Array.from({ length: 3000 }, (_, i) => `line ${i} ${"x".repeat(i % 97)}`);
  await writeFile(file, `${lines.join("\n")}\n`);
  assert.deepEqual((await readTail(file, 3)).lines, lines.slice(-3));
  assert.deepEqual((await readTail(file, 2500)).lines, lines.slice(-2500));
  assert.deepEqual((await readTail(file, 5000)).lines, lines, "more than there are: all of them");
  assert.deepEqual((await readTail(file, 0)).lines, []);
  assert.deepEqual((await readTail(join(dir, "missing.log"), 10)).lines, [], "no file yet: no lines");
  // A line still being written is not a line yet: the follow reads it whole once it ends.
  await appendFile(file, "half a li");
  const tail = await readTail(file, 2);
  assert.deepEqual(tail.lines, lines.slice(-2));
  assert.equal(tail.offset, Buffer.byteLength(`${lines.join("\n")}\n`));
});

test("an app's ring keeps its newest lines; the tee keeps what names an app, debug and process output aside", async () => {
  const logs = new AppLogs({ localPath: "/nonexistent", ringLines: 3, now: () => Date.UTC(2026, 0, 1) });
  const seen: string[] = [];
  const logger = logs.tee({
    debug: (m) => seen.push(`debug ${m}`),
    info: (m) => seen.push(`info ${m}`),
    warn: (m) => seen.push(`warn ${m}`),
    error: (m) => seen.push(`error ${m}`),
  });
  logger.info("agent line");
  for (let i = 1; i <= 4; i++) logger.info(`hello ${i}`, { app: "web" });
  logger.warn("careful\nsecond line", { app: "db" });
  logger.debug("noise", { app: "db" });
  logger.info("GET /", { app: "api", stream: "stdout" });
  assert.equal(seen.length, 8, "everything still reaches the agent's logger");
  const t0 = "2026-01-01T00:00:00.000Z";
  const tail = async (app: string) => (await logs.tail(app, "embedded", 10)).lines;
  assert.deepEqual(await tail("web"), [`${t0} hello 2`, `${t0} hello 3`, `${t0} hello 4`]);
  assert.deepEqual(await tail("db"), [`${t0} [warn] careful`, `${t0} [warn] second line`]);
  assert.deepEqual(await tail("api"), []);
  assert.deepEqual((await logs.tail("web", "worker", 1)).lines, [`${t0} hello 4`]);
});

test("following a log file survives its rotation: new lines of the new file follow", async (t) => {
  const dir = await tempDir(t);
  const logs = new AppLogs({ localPath: dir });
  const file = logs.filePath("api");
  await mkdir(dirname(file), { recursive: true });
  await writeFile(file, "old 1\nold 2\n");
  const got: string[] = [];
  const stop = new AbortController();
  t.after(() => stop.abort());
  const following = logs.follow("api", "process", 1, (lines) => got.push(...lines), stop.signal);
  await until("the tail", async () => (got.length === 1 ? true : undefined));
  assert.deepEqual(got, ["old 2"]);
  await appendFile(file, "new 3\nnew ");
  await until("line 3", async () => (got.includes("new 3") ? true : undefined));
  await appendFile(file, "4\n");
  await until("line 4, whole", async () => (got.includes("new 4") ? true : undefined));
  await rename(file, `${file}.1`);
  await writeFile(file, "rotated 5\n");
  await until("the rotated file's line", async () => (got.includes("rotated 5") ? true : undefined));
  stop.abort();
  await following;
  assert.deepEqual(got, ["old 2", "new 3", "new 4", "rotated 5"]);
});

/** A real agent running chatty three times: embedded and in a worker (their ctx.log lines) and as a process (its stdout). */
async function chattyAgent(t: TestContext) {
  const spec = (name: string, lines: string[]) =>
    [`name: ${name}`, `version: "1.0.0"`, "source: { type: path, path: code/chatty }", ...lines].join("\n") + "\n";
  const repo = await gitopsRepo(t, {
    "apps/inproc/app.yaml": spec("inproc", [`env: { port: 0, api_token: ${SECRET} }`]),
    "apps/inworker/app.yaml": spec("inworker", [
      "isolation: worker",
      `env: { port: 0, api_token: ${SECRET}, use_console: true }`,
    ]),
    "apps/proc/app.yaml": spec("proc", [
      "isolation: process",
      "entry: server.js",
      `env: { port: 0, api_token: ${SECRET} }`,
      "health: { type: tcp, interval: 100 }",
    ]),
    ...(await code("chatty", "chatty")),
  });
  const agent = createAgent({
    repoUrl: repo.bare,
    localPath: join(repo.root, "local"),
    listen: "127.0.0.1:0",
    token: TOKEN,
    reconcileInterval: "1h",
  });
  t.after(() => agent.stop());
  await agent.start();
  const url = `http://${agent.address}`;
  const get = async (app: string, path: string) => {
    const port = (await agent.getAppStatus(app))?.port;
    return (await fetch(`http://127.0.0.1:${port}${path}`, { signal: AbortSignal.timeout(5000) })).text();
  };
  return { agent, url, get };
}

test("GET /apps/:name/logs serves a process app's file, an embedded app's ctx.log lines and a worker's console too, secrets hidden", async (t) => {
  const { url, get } = await chattyAgent(t);
  assert.equal(await get("inproc", "/a"), "chatty: /a");
  assert.equal(await get("proc", "/b"), "chatty: /b");
  const logs = async (app: string) => {
    const response = await fetch(`${url}/apps/${app}/logs?lines=50`, { headers: { authorization: `Bearer ${TOKEN}` } });
    assert.equal(response.status, 200);
    return (await response.json()) as { source: string; path?: string; lines: string[] };
  };
  const inproc = await logs("inproc");
  assert.equal(inproc.source, "memory");
  assert.ok(
    inproc.lines.some((l) => /Z request \/a with token \*\*\*$/.test(l)),
    inproc.lines.join("\n"),
  );
  const proc = await until("the process app's line in its file", async () => {
    const answer = await logs("proc");
    return answer.lines.some((l) => l.includes("request /b")) ? answer : undefined;
  });
  assert.equal(proc.source, "file");
  assert.match(proc.path!, /logs\/proc\.log$/);
  assert.ok(
    proc.lines.some((l) => /Z request \/b with token \*\*\*$/.test(l)),
    proc.lines.join("\n"),
  );
  assert.ok(
    proc.lines.some((l) => /\[bc-gitops\] started pid \d+/.test(l)),
    "the agent's own lines are in the file",
  );
  assert.equal(await get("inworker", "/c"), "chatty: /c");
  const inworker = await until("the worker's lines", async () => {
    const answer = await logs("inworker");
    return answer.lines.some((l) => l.includes("console:")) ? answer : undefined;
  });
  assert.ok(
    inworker.lines.some((l) => /Z request \/c with token \*\*\*$/.test(l)),
    inworker.lines.join("\n"),
  );
  assert.ok(
    inworker.lines.some((l) => /Z console: \/c \{ token: '\*\*\*' \}$/.test(l)),
    `a worker's console.log is its log: ${inworker.lines.join("\n")}`,
  );
  for (const line of [...inproc.lines, ...proc.lines, ...inworker.lines]) assert.ok(!line.includes(SECRET), line);
  assert.equal((await logs("proc")).lines.length <= 50, true);
});

test("bc-gitops logs prints the last lines, and with -f follows new ones as the app writes them", async (t) => {
  const { url, get } = await chattyAgent(t);
  await get("proc", "/one");
  await get("proc", "/two");
  const env = { BC_GITOPS_TOKEN: TOKEN };
  const last = await until("both lines in the file", async () => {
    const result = await runCli(["logs", "proc", "-n", "2", "--url", url], { env });
    return /request \/two/.test(result.stdout) ? result : undefined;
  });
  assert.equal(last.exitCode, 0, last.stderr);
  const printed = last.stdout.trimEnd().split("\n");
  assert.equal(printed.length, 2);
  assert.match(printed[0]!, /request \/one with token \*\*\*$/);
  assert.match(printed[1]!, /request \/two with token \*\*\*$/);
  const refused = await runCli(["logs", "proc", "--url", url]);
  assert.equal(refused.exitCode, 1);
  assert.match(refused.stderr, /401.*pass --token or set BC_GITOPS_TOKEN/);

  for (const app of ["proc", "inproc"]) {
    const [command, prefix] = cliCommand();
    const child = await spawnProcess(command, [...prefix, "logs", app, "-f", "-n", "0", "--url", url], {
      env: { ...(process.env as Record<string, string>), ...env, NO_COLOR: "1" },
    });
    t.after(() => child.terminate(2000));
    let out = "";
    child.stdout.setEncoding("utf8");
    child.stdout.on("data", (chunk: string) => (out += chunk));
    child.stderr.resume();
    // The follow is open once a request's line shows up; keep asking until one does.
    await until(`${app}: a line while following`, async () => {
      await get(app, "/followed");
      return out.includes("request /followed") ? true : undefined;
    });
    await get(app, "/after");
    await until(`${app}: the next line`, async () => (out.includes("request /after") ? true : undefined));
    assert.ok(!out.includes(SECRET));
    assert.doesNotMatch(out, /request \/two/, "-n 0: no old lines");
    await child.terminate(2000);
  }
});
