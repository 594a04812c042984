import { test } from "node:test";
import assert from "node:assert/strict";
import { Fleet } from "../../src/fleet/fleet.ts";
import { hostIdentity } from "../../src/fleet/host.ts";
import { jitterMs, jitteredInterval, nextPollDelay, parseJitter } from "../../src/fleet/jitter.ts";
import { waveOf } from "../../src/fleet/rollout.ts";
import { validateText, type LoadResult } from "../../src/loader.ts";
import { silentLogger } from "../../src/logger.ts";
import { desiredState, type DeployedSpec } from "../../src/plan.ts";
import type { AppSpec } from "../../src/spec.ts";

test("a host's wave is a stable hash of host and app, spread over every wave, or its rollout_wave label", () => {
  const hosts = Array.from({ length: 400 }, (_, i) => hostIdentity(`web-${i}`));
  const counts = [0, 0, 0, 0];
  for (const host of hosts) counts[waveOf(host, "web", 4)]!++;
  for (const count of counts) assert.ok(count > 60, `every wave gets hosts: ${counts.join(", ")}`);
  assert.equal(
    waveOf(hostIdentity("web-7"), "web", 4),
    waveOf(hostIdentity("WEB-7"), "web", 4),
    "host names ignore case",
  );
  const differ = hosts.filter((h) => waveOf(h, "web", 4) !== waveOf(h, "api", 4)).length;
  assert.ok(differ > 200, "another app rolls out to another first group");
  assert.equal(waveOf(hostIdentity("web-7", { rollout_wave: "2" }), "web", 4), 2);
  assert.equal(waveOf(hostIdentity("web-7", { rollout_wave: "9" }), "web", 4), 3, "past the last wave: the last");
  assert.equal(waveOf(hostIdentity("web-7"), "web", 1), 0);
});

const T0 = Date.parse("2030-01-01T10:00:00Z");
const MIN = 60_000;

/** A spec from YAML lines. */
async function spec(...lines: string[]): Promise<AppSpec> {
  const result = await validateText(lines.join("\n") + "\n", "yaml");
  assert.deepEqual(result.errors, []);
  return result.spec!;
}

/** Plans `spec` (v2) against `deployed` (v1) for a host in `wave` of 3 at `now`: what the desired state holds. */
async function held(rollout: string, wave: number, now: number, deployed = true) {
  const v2 = await spec("name: web", 'version: "2"', `rollout: ${rollout}`);
  const load: LoadResult = {
    apps: [{ spec: v2, file: "apps/web/app.yaml" }],
    errors: [],
    warnings: [],
    invalid: [],
    unnamed: [],
  };
  const asked: string[] = [];
  const fleet = new Fleet({
    identity: hostIdentity("web-1", { rollout_wave: String(wave) }),
    commitTime: async (commit, path) => {
      asked.push(`${commit} ${path}`);
      return T0;
    },
    logger: silentLogger,
  });
  const v1 = { ...v2, version: "1" };
  delete (v1 as Partial<AppSpec>).rollout;
  const running: Record<string, DeployedSpec> = deployed ? { web: { spec: v1 } } : {};
  const view = fleet.view(load);
  const desired = await fleet.hold(desiredState(view.load, running), running, { commit: "c".repeat(40), load }, now);
  return {
    version: desired.apps.web?.spec.version,
    invalid: [...desired.invalid],
    held: fleet.held.get("web"),
    asked,
    fleet,
  };
}

test("wave 0 applies at once; wave k from commit time + k × interval, the commit time asked of git for the app's directory", async () => {
  const wave0 = await held("{ waves: 3, interval: 10m }", 0, T0 - 5 * MIN);
  assert.equal(wave0.version, "2");
  assert.deepEqual(wave0.asked, [], "wave 0 needs no commit time");

  const early = await held("{ waves: 3, interval: 10m }", 2, T0 + 19 * MIN);
  assert.equal(early.version, "1", "the running spec stays desired");
  assert.deepEqual(early.held, {
    wave: 2,
    waves: 3,
    paused: false,
    due: T0 + 20 * MIN,
    reason: "waiting for wave 2 at 2030-01-01T10:20:00.000Z",
  });
  assert.deepEqual(early.asked, [`${"c".repeat(40)} apps/web`]);
  assert.equal(early.fleet.nextDue(), T0 + 20 * MIN);
  assert.equal(early.fleet.waiting, true);

  const due = await held("{ waves: 3, interval: 10m }", 2, T0 + 20 * MIN);
  assert.equal(due.version, "2");
  assert.equal(due.fleet.waiting, false);
});

test("paused holds every wave that has not applied, wave 0 included; an app not yet deployed waits as not desired", async () => {
  const paused = await held("{ waves: 3, interval: 10m, paused: true }", 0, T0 + 60 * MIN);
  assert.equal(paused.version, "1");
  assert.match(paused.held!.reason, /^rollout paused \(wave 0 of 3 has not applied\)$/);
  assert.equal(paused.fleet.nextDue(), undefined, "nothing falls due while paused");

  const fresh = await held("{ waves: 3, interval: 10m }", 1, T0 + 5 * MIN, false);
  assert.equal(fresh.version, undefined);
  assert.deepEqual(fresh.invalid, ["web"]);
  assert.match(fresh.held!.reason, /^waiting for wave 1 at 2030-01-01T10:10:00.000Z$/);
});

test("jitter: durations and fractions of the interval, the interval moved within ± jitter, retries and due waves", () => {
  assert.deepEqual(parseJitter("10%"), { fraction: 0.1 });
  assert.deepEqual(parseJitter(0.25), { fraction: 0.25 });
  assert.deepEqual(parseJitter("0.5"), { fraction: 0.5 });
  assert.deepEqual(parseJitter("5s"), { ms: 5000 });
  assert.deepEqual(parseJitter(0), { ms: 0 });
  assert.equal(parseJitter("150%"), undefined);
  assert.equal(parseJitter("often"), undefined);
  assert.equal(jitterMs("10%", 60_000), 6000);
  assert.equal(jitterMs(undefined, 60_000), 6000, "default 10%");
  assert.equal(
    jitteredInterval(60_000, 6000, () => 0),
    54_000,
  );
  assert.equal(
    jitteredInterval(60_000, 6000, () => 0.5),
    60_000,
  );
  assert.equal(
    jitteredInterval(60_000, 6000, () => 0.999999),
    66_000,
  );
  const options = { interval: 60_000, jitter: 6000, due: undefined, now: 0, random: () => 0 };
  assert.equal(nextPollDelay(60_000, options), 54_000, "a timed poll is jittered");
  assert.equal(nextPollDelay(2000, options), 2000, "a retry is not");
  assert.equal(
    nextPollDelay(60_000, { ...options, due: 10_000 }),
    10_000,
    "a wave falling due brings the tick forward",
  );
});
