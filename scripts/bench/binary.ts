/**
 * Single binary benchmark: the size and cold start of the compiled executable (`npm run compile`,
 * with bytecode, and the same build without it) against `bun src/cli.ts`, `deno run -A src/cli.ts`
 * and `node dist/cli.js`. Cold start is the median wall time of RUNS fresh processes (after one
 * discarded warm-up each), spawned round-robin so drift on a busy machine hits every variant alike,
 * for `--version` (start-up only) and `validate examples/gitops-repo` (start-up plus real work).
 *
 *   bun scripts/bench/binary.ts [runs]      # default 15; builds dist/ and both binaries first
 */
import { mkdtemp, rm, stat } from "node:fs/promises";
import { cpus, loadavg, release, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { runtimeName, runtimeVersion } from "../../src/_platform.ts";
import { exec } from "../../src/exec.ts";
import { median, ms, table } from "./_stats.ts";

const RUNS = Number(process.argv[2] ?? 15);
const root = fileURLToPath(new URL("../..", import.meta.url));
const example = join(root, "examples", "gitops-repo");
const env = { NO_COLOR: "1" };

if (runtimeName !== "bun") throw new Error("run with bun: bun scripts/bench/binary.ts");

interface Variant {
  name: string;
  command: string;
  prefix: string[];
  /** Bytes of the executable, for the binaries. */
  size?: number;
}

const work = await mkdtemp(join(tmpdir(), "bc-gitops-bench-binary-"));
try {
  process.stderr.write("building dist/ and the binaries…\n");
  await exec("npm", ["run", "build"], { cwd: root, timeoutMs: 300_000 });
  const compile = (args: string[]) =>
    exec(process.execPath, [join(root, "scripts", "compile.ts"), ...args], { cwd: root, timeoutMs: 600_000 });
  await compile([]);
  const plain = join(work, "bc-gitops");
  await compile(["--no-bytecode", "--outfile", plain]);
  const deno = join(root, "node_modules", ".bin", "deno");
  const binary = join(root, "dist", "bc-gitops");
  const variants: Variant[] = [
    { name: "`dist/bc-gitops` (minify + bytecode)", command: binary, prefix: [], size: (await stat(binary)).size },
    { name: "binary without `--bytecode`", command: plain, prefix: [], size: (await stat(plain)).size },
    { name: "`bun src/cli.ts`", command: process.execPath, prefix: [join(root, "src", "cli.ts")] },
    { name: "`deno run -A src/cli.ts`", command: deno, prefix: ["run", "-A", join(root, "src", "cli.ts")] },
    { name: "`node dist/cli.js`", command: "node", prefix: [join(root, "dist", "cli.js")] },
    // What spawning and waiting for any process costs here (the floor under every row).
    { name: "`true` (spawn overhead)", command: "true", prefix: [] },
  ];
  const commands: Record<string, string[]> = { "--version": ["--version"], validate: ["validate", example] };

  const times = new Map<string, number[]>();
  for (let run = -1; run < RUNS; run++) {
    for (const variant of variants) {
      for (const [label, args] of Object.entries(commands)) {
        const started = performance.now();
        await exec(variant.command, [...variant.prefix, ...args], { cwd: root, env, timeoutMs: 60_000 });
        const elapsed = performance.now() - started;
        if (run < 0) continue; // warm-up: page cache, Deno's module cache
        const key = `${variant.name}\0${label}`;
        times.set(key, [...(times.get(key) ?? []), elapsed]);
      }
    }
  }

  const version = async (command: string, args: string[]) =>
    (await exec(command, args, { timeoutMs: 30_000 })).stdout.trim().split("\n")[0];
  const cpu = cpus();
  const rows = variants.map((v) => [
    v.name,
    v.size === undefined ? "–" : `${(v.size / 1024 / 1024).toFixed(1)} MB`,
    ms(median(times.get(`${v.name}\0--version`)!)),
    ms(median(times.get(`${v.name}\0validate`)!)),
  ]);
  process.stdout.write(
    [
      `Machine: ${cpu[0]?.model ?? "unknown CPU"} × ${cpu.length}, ${process.platform} ${release()}, load average ${loadavg()
        .map((l) => l.toFixed(2))
        .join(" ")} at the end`,
      `Versions: bun ${runtimeVersion}, ${await version(deno, ["--version"])}, node ${await version("node", ["--version"])}`,
      `Command: bun scripts/bench/binary.ts ${RUNS} (median wall time of ${RUNS} fresh processes, ms)`,
      "",
      table(["variant", "size", "`--version`", "`validate examples/gitops-repo`"], rows),
      "",
    ].join("\n"),
  );
} finally {
  await rm(work, { recursive: true, force: true });
}
