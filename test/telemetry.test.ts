import { test } from "node:test";
import assert from "node:assert/strict";
import { Telemetry } from "../src/telemetry.ts";

test("a throwing or rejecting subscriber neither breaks the emitter nor the other subscribers", async () => {
  const telemetry = new Telemetry();
  const seen: string[] = [];
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown) => unhandled.push(reason);
  process.on("unhandledRejection", onUnhandled);
  try {
    telemetry.on("bc_gitops:deploy:stop", () => {
      throw new Error("sync bug");
    });
    telemetry.on("bc_gitops:deploy:stop", async () => {
      throw new Error("async bug");
    });
    telemetry.on("*", (e) => void seen.push(e.name));
    telemetry.emit("bc_gitops:deploy:stop", { duration_ms: 3 }, { app: "web" });
    await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(seen, ["bc_gitops:deploy:stop"]);
    assert.deepEqual(unhandled, []);
  } finally {
    process.off("unhandledRejection", onUnhandled);
  }
});

test("on() returns a function that unsubscribes", () => {
  const telemetry = new Telemetry();
  let count = 0;
  const off = telemetry.on("bc_gitops:reconcile:start", () => void count++);
  telemetry.emit("bc_gitops:reconcile:start");
  off();
  telemetry.emit("bc_gitops:reconcile:start");
  assert.equal(count, 1);
});
