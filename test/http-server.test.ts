import { test } from "node:test";
import assert from "node:assert/strict";
import { GitopsError } from "../src/errors.ts";
import { formatAddress, isLoopback, parseListen, serve, type FetchHandler } from "../src/http-server.ts";

test("listen addresses parse into a host and port; a bare port is loopback, :PORT is every interface", () => {
  const cases: [string, string, number][] = [
    ["127.0.0.1:9477", "127.0.0.1", 9477],
    ["localhost:80", "127.0.0.1", 80],
    ["[::1]:9477", "::1", 9477],
    ["0.0.0.0:1", "0.0.0.0", 1],
    [":9477", "0.0.0.0", 9477],
    ["9477", "127.0.0.1", 9477],
    ["10.0.0.5:0", "10.0.0.5", 0],
    ["agent.internal:8080", "agent.internal", 8080],
  ];
  for (const [listen, hostname, port] of cases) assert.deepEqual(parseListen(listen), { hostname, port }, listen);
  for (const bad of ["", "127.0.0.1", "127.0.0.1:", "127.0.0.1:99999", "http://127.0.0.1:9477", "::1:9477", "a b:1"]) {
    assert.throws(() => parseListen(bad), (e: unknown) => e instanceof GitopsError && e.code === "E_CONFIG" && /expected HOST:PORT/.test(e.message), bad);
  }
});

test("only loopback hosts count as loopback", () => {
  const cases: [string, boolean][] = [
    ["127.0.0.1", true],
    ["127.1.2.3", true],
    ["localhost", true],
    ["::1", true],
    ["[::1]", true],
    ["::ffff:127.0.0.1", true],
    ["0.0.0.0", false],
    ["::", false],
    ["192.168.1.10", false],
    ["127.0.0.1.evil.example", false],
    ["localhost.example", false],
  ];
  for (const [host, expected] of cases) assert.equal(isLoopback(host), expected, host);
  assert.equal(formatAddress("::1", 80), "[::1]:80");
  assert.equal(formatAddress("127.0.0.1", 80), "127.0.0.1:80");
});

const echo: FetchHandler = async (request) => {
  const url = new URL(request.url);
  if (url.pathname === "/throw") throw new Error("handler bug with a secret inside");
  const body = request.method === "POST" ? await request.text() : "";
  return new Response(JSON.stringify({ method: request.method, path: url.pathname, query: url.search, header: request.headers.get("x-test"), body }), {
    status: url.pathname === "/created" ? 201 : 200,
    headers: { "content-type": "application/json", "x-reply": "yes" },
  });
};

for (const engine of ["native", "node"] as const) {
  test(`the ${engine} engine serves a fetch handler on an OS-assigned loopback port until closed`, async (t) => {
    const errors: unknown[] = [];
    const server = await serve(echo, { hostname: "127.0.0.1", port: 0, engine, onError: (e) => errors.push(e) });
    t.after(() => server.close());
    assert.equal(server.hostname, "127.0.0.1");
    assert.ok(server.port > 0);
    assert.equal(server.address, `127.0.0.1:${server.port}`);
    const base = `http://${server.address}`;

    const get = await fetch(`${base}/a/b?x=1`, { headers: { "x-test": "hello" } });
    assert.equal(get.status, 200);
    assert.equal(get.headers.get("x-reply"), "yes");
    assert.deepEqual(await get.json(), { method: "GET", path: "/a/b", query: "?x=1", header: "hello", body: "" });

    const big = "x".repeat(200_000);
    const post = await fetch(`${base}/created`, { method: "POST", body: big });
    assert.equal(post.status, 201);
    assert.equal(((await post.json()) as { body: string }).body, big);

    const head = await fetch(`${base}/a`, { method: "HEAD" });
    assert.equal(head.status, 200);
    assert.equal(await head.text(), "");

    const broken = await fetch(`${base}/throw`);
    assert.equal(broken.status, 500);
    assert.equal(await broken.text(), "internal error\n", "nothing of the error reaches the client");
    assert.equal(errors.length, 1);

    await server.close();
    await server.close(); // idempotent
    await assert.rejects(fetch(`${base}/a`).then((r) => r.text()));
  });

  test(`the ${engine} engine refuses an address in use with a clear configuration error`, async (t) => {
    const first = await serve(echo, { hostname: "127.0.0.1", port: 0, engine });
    t.after(() => first.close());
    await assert.rejects(
      serve(echo, { hostname: "127.0.0.1", port: first.port, engine }),
      (e: unknown) => e instanceof GitopsError && e.code === "E_CONFIG" && e.message === `cannot listen on 127.0.0.1:${first.port}: the address is already in use`,
    );
  });
}
