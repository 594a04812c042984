/**
 * Regenerates the README's screenshots (docs/dashboard.png, docs/dashboard-phone.png,
 * docs/cli-logs.png, docs/cli-events.png) from a real agent running real apps of
 * test/fixtures/apps/, shot with Debian's Chromium (playwright-core, nothing downloaded).
 *
 *   bun scripts/screenshots.ts [--out docs]
 *
 * The agent has five apps in the states a dashboard has to show: running, hot-reloaded, a process
 * app with a log, one whose start fails (failed, backing off) and one waiting for it.
 */
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { runtimeName } from "../src/_platform.ts";
import { createAgent } from "../src/agent.ts";
import { exec, spawnProcess } from "../src/exec.ts";
import { CHROMIUM, CHROMIUM_ARGS } from "../test/helpers/browser.ts";

const root = fileURLToPath(new URL("..", import.meta.url));
const out = process.argv.includes("--out") ? process.argv[process.argv.indexOf("--out") + 1]! : join(root, "docs");
const TOKEN = "screenshot-token-42";
const GIT_ENV = {
  GIT_AUTHOR_NAME: "Ops",
  GIT_AUTHOR_EMAIL: "ops@example.com",
  GIT_COMMITTER_NAME: "Ops",
  GIT_COMMITTER_EMAIL: "ops@example.com",
  GIT_CONFIG_NOSYSTEM: "1",
  GIT_CONFIG_GLOBAL: "/dev/null",
};

const tmp = await mkdtemp(join(tmpdir(), "bc-gitops-screenshots-"));
const bare = join(tmp, "remote.git");
const work = join(tmp, "work");
const git = (cwd: string, ...args: string[]) => exec("git", args, { cwd, env: GIT_ENV });

async function commit(files: Record<string, string>, message: string): Promise<void> {
  for (const [path, content] of Object.entries(files)) {
    await mkdir(dirname(join(work, path)), { recursive: true });
    await writeFile(join(work, path), content);
  }
  await git(work, "add", "-A");
  await git(work, "commit", "-q", "-m", message);
  await git(work, "push", "-q", bare, "HEAD:refs/heads/main");
}

async function fixture(name: string, as: string): Promise<Record<string, string>> {
  const dir = join(root, "test", "fixtures", "apps", name);
  const files: Record<string, string> = {};
  for (const file of await readdir(dir)) files[`code/${as}/${file}`] = await readFile(join(dir, file), "utf8");
  return files;
}

const spec = (name: string, version: string, ...lines: string[]) =>
  [`name: ${name}`, `version: "${version}"`, `source: { type: path, path: code/${name} }`, ...lines].join("\n") + "\n";

await git(tmp, "init", "-q", "--bare", "-b", "main", bare);
await git(tmp, "init", "-q", "-b", "main", work);
await commit(
  {
    "apps/db/app.yaml": spec(
      "db",
      "1.4.0",
      "description: Orders database proxy",
      "env: { port: 0 }",
      "health: { type: http, path: /health }",
    ),
    "apps/web/app.yaml": spec("web", "2.1.0", "description: Public web API", "env: { port: 0 }", "depends_on: [db]"),
    "apps/api/app.yaml": spec(
      "api",
      "0.9.2",
      "isolation: process",
      "entry: server.js",
      "env: { port: 0, api_token: s3cr3t-api-token }",
      "health: { type: tcp }",
    ),
    "apps/reports/app.yaml": spec("reports", "1.0.0", "env: { port: 0, fail_start: true }"),
    "apps/mailer/app.yaml": spec("mailer", "1.2.0", "isolation: worker", "env: { port: 0 }", "depends_on: [reports]"),
    ...(await fixture("rt-fetch", "db")),
    ...(await fixture("rt-server", "web")),
    ...(await fixture("chatty", "api")),
    ...(await fixture("rt-server", "reports")),
    ...(await fixture("rt-fetch", "mailer")),
  },
  "Apps of the shop",
);

const agent = createAgent({
  repoUrl: bare,
  localPath: join(tmp, "local"),
  listen: "127.0.0.1:0",
  token: TOKEN,
  reconcileInterval: "1h",
});
try {
  await agent.start();
  const url = `http://${agent.address}`;
  await commit(
    {
      "apps/db/app.yaml": spec(
        "db",
        "1.5.0",
        "description: Orders database proxy",
        "env: { port: 0 }",
        "health: { type: http, path: /health }",
      ),
    },
    "db 1.5.0",
  );
  await agent.reconcile();
  await commit({ "code/web/message.js": 'export const MESSAGE = "hello from web, reloaded";\n' }, "web: new greeting");
  await agent.reconcile();
  const api = (await agent.getAppStatus("api"))?.port;
  for (const path of ["/orders", "/orders/42", "/health", "/cart"]) await fetch(`http://127.0.0.1:${api}${path}`);
  await new Promise((resolve) => setTimeout(resolve, 500)); // the log file is written in the background

  await mkdir(out, { recursive: true });
  const profile = await mkdtemp(join(tmpdir(), "bc-gitops-chromium-"));
  const browser = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
    viewport: { width: 1280, height: 900 },
  });
  try {
    await browser.addInitScript((token) => sessionStorage.setItem("bc-gitops-token", token), TOKEN);
    const page = await browser.newPage();
    await page.goto(`${url}/`);
    await page.waitForSelector('[data-app="mailer"]');
    await page.locator('[data-app="api"] summary').click();
    await page.waitForFunction(() =>
      /request \/cart/.test(document.querySelector('[data-app="api"] .log')!.textContent!),
    );
    await page.locator('[data-app="db"] summary').click();
    await page.waitForTimeout(300);
    await page.screenshot({ path: join(out, "dashboard.png"), fullPage: true });
    const phone = await browser.newPage();
    await phone.setViewportSize({ width: 390, height: 844 });
    await phone.goto(`${url}/`);
    await phone.waitForSelector('[data-app="mailer"]');
    await phone.screenshot({ path: join(out, "dashboard-phone.png") });

    // A blank page: the dashboard's content policy would refuse the terminal's inline styles.
    const shell = await browser.newPage();
    const logs = await cli(["logs", "api", "-n", "7", "--url", url]);
    await terminal(shell, "bc-gitops logs api -n 7", logs, join(out, "cli-logs.png"));
    const events = await cli(["events", "-n", "14", "--url", url], 14);
    await terminal(shell, "bc-gitops events -n 14", events, join(out, "cli-events.png"));
  } finally {
    await browser.close();
    await rm(profile, { recursive: true, force: true });
  }
  console.log(
    `wrote ${["dashboard.png", "dashboard-phone.png", "cli-logs.png", "cli-events.png"].map((f) => join(out, f)).join(", ")}`,
  );
} finally {
  await agent.stop();
  await rm(tmp, { recursive: true, force: true });
}

/** The CLI's output in colour; with `lines`, a command that follows is ended once it printed that many. */
async function cli(args: string[], lines?: number): Promise<string> {
  const command = [process.execPath, ...(runtimeName === "deno" ? ["run", "-A"] : []), join(root, "src", "cli.ts")];
  const env: Record<string, string> = {
    ...(process.env as Record<string, string>),
    FORCE_COLOR: "1",
    BC_GITOPS_TOKEN: TOKEN,
  };
  delete env.NO_COLOR;
  if (lines === undefined) return (await exec(command[0]!, [...command.slice(1), ...args], { env })).stdout;
  const child = await spawnProcess(command[0]!, [...command.slice(1), ...args], { env });
  let text = "";
  child.stdout.setEncoding("utf8");
  child.stdout.on("data", (chunk: string) => (text += chunk));
  child.stderr.resume();
  const deadline = Date.now() + 20_000;
  while (text.split("\n").length <= lines && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  await child.terminate(2000);
  return text;
}

/** Shoots `text` (with ANSI colours) as a dark terminal showing `command`. */
async function terminal(page: import("playwright-core").Page, command: string, text: string, path: string) {
  const escape = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  const COLOURS: Record<string, string> = {
    "31": "#ff7b72",
    "32": "#7ee787",
    "33": "#e3b341",
    "36": "#79c0ff",
    "2": "#8b949e",
  };
  let html = "";
  let open = 0;
  for (const part of escape(text).split(/(\u001b\[[0-9;]*m)/)) {
    const code = /^\u001b\[([0-9;]*)m$/.exec(part)?.[1];
    if (code === undefined) html += part;
    else if (COLOURS[code]) {
      html += `<span style="color:${COLOURS[code]}">`;
      open++;
    } else if (open > 0) {
      html += "</span>";
      open--;
    }
  }
  html += "</span>".repeat(open);
  await page.setContent(
    `<body style="margin:0;background:#0d1117"><pre id="t" style="margin:0;display:inline-block;padding:16px 20px;color:#e6edf3;font:13px/1.5 'DejaVu Sans Mono',monospace;background:#0d1117;white-space:pre-wrap;max-width:150ch"><span style="color:#8b949e">$</span> ${escape(command)}\n${html.trimEnd()}</pre></body>`,
  );
  await page.locator("#t").screenshot({ path });
}
