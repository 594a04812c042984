import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:net";
import type { TestContext } from "node:test";
import { GitopsError } from "../src/errors.ts";
import {
  formatAddress,
  isLoopback,
  isLoopbackHost,
  listen,
  parseListen,
  serve,
  type FetchHandler,
  type HttpListener,
  type ListenOptions,
} from "../src/http-server.ts";

// Each server case runs on the runtime's own server (Bun.serve / Deno.serve) and on node:http, the one Node uses.
const ENGINES = ["native", "node"] as const;

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
    assert.throws(
      () => parseListen(bad),
      (e: unknown) => e instanceof GitopsError && e.code === "E_CONFIG" && /expected HOST:PORT/.test(e.message),
      bad,
    );
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

test("Host header values name a loopback host only as localhost, *.localhost, 127.x.x.x or [::1], with or without a port", () => {
  const cases: [string, boolean][] = [
    ["localhost", true],
    ["localhost:9477", true],
    ["LocalHost.", true],
    ["api.localhost:80", true],
    ["127.0.0.1", true],
    ["127.255.0.9:9477", true],
    ["[::1]", true],
    ["[::1]:9477", true],
    ["[::ffff:127.0.0.1]:1", true],
    ["::1", false],
    ["127.0.0.256", false],
    ["127.0.0.1.evil.example", false],
    ["localhost.evil.example:9477", false],
    ["evil.example", false],
    ["0.0.0.0:9477", false],
    ["[::]:9477", false],
    ["[::2]", false],
    ["10.0.0.1", false],
    ["localhost:99999999", false],
    ["localhost:9477:1", false],
    ["", false],
  ];
  for (const [host, expected] of cases) assert.equal(isLoopbackHost(host), expected, host);
});

const echo: FetchHandler = async (request) => {
  const url = new URL(request.url);
  if (url.pathname === "/throw") throw new Error("handler bug with a secret inside");
  const body = request.method === "POST" ? await request.text() : "";
  return new Response(
    JSON.stringify({
      method: request.method,
      path: url.pathname,
      query: url.search,
      header: request.headers.get("x-test"),
      body,
    }),
    {
      status: url.pathname === "/created" ? 201 : 200,
      headers: { "content-type": "application/json", "x-reply": "yes" },
    },
  );
};

for (const engine of ENGINES) {
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
      (e: unknown) =>
        e instanceof GitopsError &&
        e.code === "E_CONFIG" &&
        e.message === `cannot listen on 127.0.0.1:${first.port}: the address is already in use`,
    );
  });
}

// listen(): the fetch apps' server, with a swappable handler.
async function open(
  t: TestContext,
  options: Partial<ListenOptions> & Pick<ListenOptions, "handler">,
): Promise<HttpListener> {
  const listener = await listen({ host: "127.0.0.1", port: 0, closeTimeoutMs: 1000, ...options });
  t.after(() => listener.close());
  return listener;
}

const url = (listener: HttpListener, path = "/") => `http://127.0.0.1:${listener.port}${path}`;

for (const engine of ENGINES) {
  describe(`the HTTP listener (${engine})`, () => {
    test("serves the handler on an OS-assigned port and passes method, path, query and headers", async (t) => {
      const listener = await open(t, {
        engine,
        handler: (request) => {
          const u = new URL(request.url);
          return Response.json({
            method: request.method,
            path: u.pathname,
            query: u.search,
            header: request.headers.get("x-test"),
          });
        },
      });
      assert.ok(listener.port > 0);
      assert.equal(listener.host, "127.0.0.1");
      const response = await fetch(url(listener, "/a/b?c=1"), {
        method: "PUT",
        headers: { "x-test": "yes" },
        body: "",
      });
      assert.equal(response.status, 200);
      assert.deepEqual(await response.json(), { method: "PUT", path: "/a/b", query: "?c=1", header: "yes" });
    });

    test("streams request and response bodies and keeps status, headers and several set-cookie values", async (t) => {
      const listener = await open(t, {
        engine,
        handler: async (request) => {
          const text = await request.text();
          const chunks = [text.toUpperCase(), "|", "end"];
          const body = new ReadableStream<Uint8Array>({
            pull(controller) {
              const next = chunks.shift();
              if (next === undefined) controller.close();
              else controller.enqueue(new TextEncoder().encode(next));
            },
          });
          const headers = new Headers({ "x-kind": "stream" });
          headers.append("set-cookie", "a=1");
          headers.append("set-cookie", "b=2");
          return new Response(body, { status: 201, headers });
        },
      });
      const big = "x".repeat(200_000);
      const response = await fetch(url(listener), { method: "POST", body: big });
      assert.equal(response.status, 201);
      assert.equal(response.headers.get("x-kind"), "stream");
      assert.deepEqual(response.headers.getSetCookie(), ["a=1", "b=2"]);
      assert.equal(await response.text(), `${big.toUpperCase()}|end`);
    });

    test("a swapped handler answers the next request", async (t) => {
      const listener = await open(t, { engine, handler: () => new Response("one") });
      assert.equal(await (await fetch(url(listener))).text(), "one");
      listener.handler = () => new Response("two");
      assert.equal(await (await fetch(url(listener))).text(), "two");
    });

    test("a handler that throws or returns no Response gives a 500 and reports the error", async (t) => {
      const errors: string[] = [];
      const handlers = {
        "/throw": () => {
          throw new Error("handler exploded");
        },
        "/reject": async () => {
          throw new Error("handler rejected");
        },
        "/nothing": () => undefined as unknown as Response,
      };
      const listener = await open(t, {
        engine,
        handler: (request) => handlers[new URL(request.url).pathname as keyof typeof handlers](),
        onError: (error) => errors.push((error as Error).message),
      });
      for (const path of Object.keys(handlers)) {
        const response = await fetch(url(listener, path));
        assert.equal(response.status, 500, path);
        await response.text();
      }
      assert.deepEqual(errors, [
        "handler exploded",
        "handler rejected",
        "the app's fetch() returned undefined, not a Response",
      ]);
    });

    test("a taken port is an error that names the address", async (t) => {
      const taken = createServer();
      await new Promise<void>((resolve) => taken.listen(0, "127.0.0.1", resolve));
      t.after(() => new Promise<void>((resolve) => taken.close(() => resolve())));
      const port = (taken.address() as { port: number }).port;
      await assert.rejects(
        listen({ host: "127.0.0.1", port, engine, handler: () => new Response("") }),
        (error: unknown) => {
          assert.ok(error instanceof GitopsError);
          assert.equal(error.code, "E_RUNTIME");
          assert.equal(error.retry, "backoff");
          assert.match(error.message, new RegExp(`cannot listen on 127\\.0\\.0\\.1:${port}: the address is in use`));
          return true;
        },
      );
    });

    test("close stops listening, is idempotent, and does not wait past its deadline for a hung request", async (t) => {
      let entered!: () => void;
      const inside = new Promise<void>((resolve) => (entered = resolve));
      const listener = await open(t, {
        engine,
        closeTimeoutMs: 200,
        handler: (request) => {
          if (new URL(request.url).pathname === "/hang") {
            entered();
            return new Promise<Response>(() => {});
          }
          return new Response("ok");
        },
      });
      assert.equal(await (await fetch(url(listener))).text(), "ok");
      const hung = fetch(url(listener, "/hang")).catch((error: unknown) => error);
      await inside;
      await Promise.all([listener.close(), listener.close()]);
      await assert.rejects(fetch(url(listener), { signal: AbortSignal.timeout(5000) }));
      void hung;
    });
  });
}
