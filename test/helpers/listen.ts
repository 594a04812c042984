/**
 * TCP listeners that count the connections they accept, for tests about where the agent checks an
 * app; {@link listenOn8080} puts one on port 8080 of a loopback address of its own (127.x.y.z), so an
 * explicit `health.port: 8080` cannot collide with anything else on 127.0.0.1:8080.
 */
import { createServer } from "node:net";
import type { TestContext } from "node:test";

/** A listener that counts the connections it accepted; closed when the test ends. */
export interface CountingListener {
  host: string;
  port: number;
  connections(): number;
}

/** Listens on `host:port` (default 127.0.0.1 and a free port). */
export async function countingListener(
  t: Pick<TestContext, "after">,
  host = "127.0.0.1",
  port = 0,
): Promise<CountingListener> {
  let count = 0;
  const server = createServer((socket) => {
    count++;
    socket.destroy();
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => resolve());
  });
  t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return { host, port: (server.address() as { port: number }).port, connections: () => count };
}

/** Listens on `<random 127.x.y.z>:8080` (a few addresses are tried); fails the test when none is free. */
export async function listenOn8080(t: Pick<TestContext, "after">): Promise<CountingListener> {
  let last: unknown;
  for (let attempt = 0; attempt < 5; attempt++) {
    const host = `127.${1 + Math.floor(Math.random() * 250)}.${Math.floor(Math.random() * 256)}.${1 + Math.floor(Math.random() * 250)}`;
    try {
      return await countingListener(t, host, 8080);
    } catch (error) {
      last = error;
    }
  }
  throw new Error(`cannot listen on port 8080 of any loopback address tried: ${String(last)}`);
}
