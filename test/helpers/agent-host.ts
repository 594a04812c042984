/**
 * An agent in a process of its own, for tests that kill it (e2e-process.test.ts).
 * Usage: agent-host.ts <repoUrl> <localPath>. Starts the agent, prints one JSON line with the pid
 * and grandchild pid that the app "db" (a proc-server fixture) reports, then runs until killed.
 */
import { createAgent } from "../../src/agent.ts";

const [repoUrl, localPath] = process.argv.slice(2) as [string, string];
const agent = createAgent({ repoUrl, localPath, runtime: "default", listen: "off", reconcileInterval: "1h" });
await agent.start();
const port = (await agent.getAppStatus("db"))?.port;
const answer = (await (await fetch(`http://127.0.0.1:${port}/`, { signal: AbortSignal.timeout(5000) })).json()) as {
  pid: number;
  grandchild?: number;
};
console.log(JSON.stringify({ pid: answer.pid, grandchild: answer.grandchild }));
setInterval(() => {}, 60_000);
