/**
 * The client side of one hot reload benchmark measurement, in a process of its own so the
 * agent's process does nothing but its own work:
 *   bun scripts/bench/_reload-load.ts <port> <expected version> [deadline ms]
 * starts two request loops on `GET http://127.0.0.1:<port>/` (one request per ms each at most),
 * prints `ready` once they get answers, probes every ms until the app answers `expected`, keeps
 * the load 100 ms longer, then prints `{ "liveAt": <epoch ms>, "total": n, "failed": n }`.
 */
const [port, expected, deadlineArg] = process.argv.slice(2);
const url = `http://127.0.0.1:${port}/`;
const deadline = Date.now() + Number(deadlineArg ?? 30_000);
const sleep = (n: number) => new Promise((resolve) => setTimeout(resolve, n));
const now = () => performance.timeOrigin + performance.now();
let done = false;
let total = 0;
let failed = 0;
let answered = 0;
const loop = async () => {
  while (!done && total < 50_000) {
    total++;
    try {
      const response = await fetch(url, { signal: AbortSignal.timeout(10_000) });
      await response.arrayBuffer();
      if (response.status === 200) answered++;
      else failed++;
    } catch {
      failed++;
    }
    await sleep(1);
  }
};
const loops = [loop(), loop()];
while (answered === 0 && Date.now() < deadline) await sleep(1);
process.stdout.write("ready\n");
let liveAt: number | null = null;
while (liveAt === null && Date.now() < deadline) {
  try {
    const response = await fetch(url, { signal: AbortSignal.timeout(10_000) });
    const body = (await response.json()) as { version?: string };
    if (body.version === expected) liveAt = now();
  } catch {
    // not answering right now: the load loops count those
  }
  if (liveAt === null) await sleep(1);
}
await sleep(100);
done = true;
await Promise.all(loops);
process.stdout.write(`${JSON.stringify({ liveAt, total, failed })}\n`);
