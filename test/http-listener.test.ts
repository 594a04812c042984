import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:net";
import type { TestContext } from "node:test";
import { GitopsError } from "../src/errors.ts";
import { listen, type HttpListener, type ListenOptions } from "../src/http-listener.ts";

// Each case runs on the runtime's own server (Bun.serve / Deno.serve) and on node:http, the one Node uses.
const ENGINES = ["native", "node"] as const;

async function open(t: TestContext, options: Partial<ListenOptions> & Pick<ListenOptions, "handler">): Promise<HttpListener> {
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
          return Response.json({ method: request.method, path: u.pathname, query: u.search, header: request.headers.get("x-test") });
        },
      });
      assert.ok(listener.port > 0);
      assert.equal(listener.host, "127.0.0.1");
      const response = await fetch(url(listener, "/a/b?c=1"), { method: "PUT", headers: { "x-test": "yes" }, body: "" });
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
      assert.deepEqual(errors, ["handler exploded", "handler rejected", "the app's fetch() returned undefined, not a Response"]);
    });

    test("a taken port is an error that names the address", async (t) => {
      const taken = createServer();
      await new Promise<void>((resolve) => taken.listen(0, "127.0.0.1", resolve));
      t.after(() => new Promise<void>((resolve) => taken.close(() => resolve())));
      const port = (taken.address() as { port: number }).port;
      await assert.rejects(listen({ host: "127.0.0.1", port, engine, handler: () => new Response("") }), (error: unknown) => {
        assert.ok(error instanceof GitopsError);
        assert.equal(error.code, "E_RUNTIME");
        assert.match(error.message, new RegExp(`cannot listen on 127\\.0\\.0\\.1:${port}`));
        return true;
      });
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
