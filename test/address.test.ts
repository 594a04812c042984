import { test } from "node:test";
import assert from "node:assert/strict";
import { bindHost, connectHost, envPort, listenPort, probeAddress } from "../src/_address.ts";
import { AppSpec } from "../src/spec.ts";

const spec = (env: Record<string, unknown>, health: Record<string, unknown> = { type: "http" }) =>
  AppSpec.parse({ name: "web", version: "1", env, health });

test("an app is checked on its explicit health.port, else where it listens", () => {
  const cases: {
    name: string;
    env: Record<string, unknown>;
    health?: Record<string, unknown>;
    listening?: number;
    expect: [string, number];
  }[] = [
    { name: "no env: the default address", env: {}, expect: ["127.0.0.1", 8080] },
    { name: "env.port", env: { port: 3000 }, listening: 3000, expect: ["127.0.0.1", 3000] },
    { name: "env.port as a string", env: { port: "3000" }, expect: ["127.0.0.1", 3000] },
    { name: "env.port 0: the port it really got", env: { port: 0 }, listening: 41234, expect: ["127.0.0.1", 41234] },
    {
      name: 'env.port "0": the port it really got',
      env: { port: "0" },
      listening: 41234,
      expect: ["127.0.0.1", 41234],
    },
    { name: "env.port 0, real port unknown: the default port", env: { port: 0 }, expect: ["127.0.0.1", 8080] },
    {
      name: "an explicit health.port wins over env.port",
      env: { port: 3000 },
      health: { type: "tcp", port: 4000 },
      expect: ["127.0.0.1", 4000],
    },
    {
      name: "an explicit health.port 8080 wins over env.port 0",
      env: { port: 0 },
      health: { type: "tcp", port: 8080 },
      listening: 41234,
      expect: ["127.0.0.1", 8080],
    },
    { name: "env.port that is not a port: the default port", env: { port: "http" }, expect: ["127.0.0.1", 8080] },
    { name: "env.host", env: { host: "127.0.0.2", port: 3000 }, expect: ["127.0.0.2", 3000] },
    { name: "env.host 0.0.0.0 is checked on loopback", env: { host: "0.0.0.0" }, expect: ["127.0.0.1", 8080] },
    { name: "env.host :: is checked on loopback", env: { host: "::" }, expect: ["127.0.0.1", 8080] },
    { name: "env.host [::] is checked on loopback", env: { host: "[::]" }, expect: ["127.0.0.1", 8080] },
    { name: 'env.host "" is checked on loopback', env: { host: "" }, expect: ["127.0.0.1", 8080] },
  ];
  for (const c of cases) {
    const { host, port } = probeAddress(spec(c.env, c.health), c.listening);
    assert.deepEqual([host, port], c.expect, c.name);
  }
});

test("a fetch app listens on env.host and env.port, else on 127.0.0.1:8080", () => {
  assert.deepEqual([bindHost({}), listenPort({}, "web")], ["127.0.0.1", 8080]);
  assert.deepEqual([bindHost({ host: "0.0.0.0" }), listenPort({ port: "0" }, "web")], ["0.0.0.0", 0]);
  assert.deepEqual([bindHost({ host: "" }), listenPort({ port: null }, "web")], ["127.0.0.1", 8080]);
  assert.equal(connectHost({ host: "::1" }), "::1");
});

test("env.port that is not a port from 0 to 65535 is an error naming the app and the value", () => {
  for (const port of [-1, 65536, 80.5, "http", {}]) {
    assert.throws(
      () => envPort({ port }, "web"),
      (error: Error & { code?: string }) => {
        assert.equal(error.code, "E_RUNTIME");
        assert.match(error.message, /^web: env\.port must be a port number from 0 to 65535, got /);
        return true;
      },
      JSON.stringify(port),
    );
  }
  assert.equal(envPort({}, "web"), undefined);
  assert.equal(envPort({ port: "" }, "web"), undefined);
});
