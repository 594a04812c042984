import { test } from "node:test";
import assert from "node:assert/strict";
import { createConsoleLogger } from "../src/console-logger.ts";
import { appLogger } from "../src/logger.ts";

test("JSON logs carry the app as a field, not inside the message, so they can be filtered by app", () => {
  const lines: string[] = [];
  const logger = createConsoleLogger({ level: "debug", format: "json", write: (line) => void lines.push(line) });
  appLogger(logger, "web").warn("uncaught error; marking the app failed", { pid: 42 });
  logger.info("applying commit 0123456789ab");
  const [app, agent] = lines.map((line) => JSON.parse(line) as Record<string, unknown>);
  assert.equal(app?.app, "web");
  assert.equal(app?.msg, "uncaught error; marking the app failed");
  assert.equal(app?.pid, 42);
  assert.equal(app?.level, "warn");
  assert.equal(agent?.app, undefined);
});
