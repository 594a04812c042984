/**
 * Builds the single executable `dist/bc-gitops` (SPEC: one file that needs only `git`) with
 * `bun build --compile`, then checks that it starts.
 *
 *   bun scripts/compile.ts [--outfile dist/bc-gitops] [--target bun-linux-arm64] [--entry src/x.ts]… [--no-bytecode]
 *
 * (`--no-bytecode` exists for scripts/bench/binary.ts, which measures what bytecode buys.)
 *
 * Flags, and why:
 * - `--minify --bytecode --format=esm`: bytecode halves cold start (see docs/benchmarks.md);
 *   without `--format=esm`, `--bytecode` emits CommonJS and the binary dies at start because
 *   consola uses `import.meta`.
 * - `--no-compile-autoload-dotenv --no-compile-autoload-bunfig`: the agent runs from whatever
 *   directory systemd or a container gives it; a stray `.env` there must not inject
 *   `BC_GITOPS_*` settings or app environment behind the configuration's back.
 * - `--compile-autoload-package-json`: Bun 1.4 builds executables whose resolver never reads a
 *   `package.json` from disk (the default changed in oven-sh/bun#25340; keeping it off is
 *   deliberate, oven-sh/bun#27058). Apps are external files the agent imports at run time, and
 *   without it a bare import resolves only to a package whose entry is `index.js` at its root:
 *   `main`/`exports` into `dist/` (hono, debug's `./src/index.js`, any `exports` map) fail with
 *   "Cannot find package". With it, embedded and worker apps resolve exactly as under `bun`
 *   (test/binary/dependencies.test.mjs pins this). Side effect, the same as under `bun`: a
 *   malformed `package.json` in the working directory is reported on stderr (not fatal) when the
 *   first app module is imported.
 * - Worker scripts: every `new URL("./<file>.ts", import.meta.url)` in `src/` that names a source
 *   file becomes an extra entrypoint, embedded flat (`--entry-naming=[name].[ext]`) next to the
 *   main bundle. Inside the binary `import.meta.url` is the main bundle's (`/$bunfs/root/bc-gitops`),
 *   so a same-directory `./<file>.ts` URL lands exactly on the embedded `<file>.js`; Bun maps the
 *   extension. URLs into other directories cannot be mapped that way and fail the build.
 */
import { mkdir, mkdtemp, readdir, readFile, rename, rm, stat } from "node:fs/promises";
import { basename, dirname, extname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { runtimeName } from "../src/_platform.ts";
import { exec } from "../src/exec.ts";

const root = fileURLToPath(new URL("..", import.meta.url));
const src = join(root, "src");
const MAIN = join(src, "cli.ts");
const URL_REF = /new\s+URL\(\s*(["'`])([^"'`]+)\1\s*,\s*import\.meta\.url\s*\)/g;
const CODE = new Set([".ts", ".mts", ".js", ".mjs"]);

/** Command-line options of this script. */
interface Options {
  outfile: string;
  target?: string;
  entries: string[];
  bytecode: boolean;
}

function parseArgs(argv: string[]): Options {
  const options: Options = { outfile: join(root, "dist", "bc-gitops"), entries: [], bytecode: true };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    if (flag === "--no-bytecode") {
      options.bytecode = false;
      continue;
    }
    const value = argv[i + 1];
    if (value === undefined || !["--outfile", "--target", "--entry"].includes(flag ?? "")) {
      throw new Error(
        `usage: bun scripts/compile.ts [--outfile PATH] [--target bun-<os>-<arch>] [--entry FILE]… [--no-bytecode] (got ${flag})`,
      );
    }
    if (flag === "--outfile") options.outfile = resolve(value);
    else if (flag === "--target") options.target = value;
    else options.entries.push(resolve(value));
    i++;
  }
  return options;
}

async function sourceFiles(dir: string): Promise<string[]> {
  const files: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const full = join(dir, entry.name);
    if (entry.isDirectory()) files.push(...(await sourceFiles(full)));
    else if (CODE.has(extname(entry.name))) files.push(full);
  }
  return files;
}

/** Source files loaded by URL (Worker scripts): `[file, referenced by]`. Throws on a URL the binary could not resolve. */
async function workerEntries(): Promise<Map<string, string>> {
  const found = new Map<string, string>();
  for (const file of await sourceFiles(src)) {
    for (const match of (await readFile(file, "utf8")).matchAll(URL_REF)) {
      const ref = match[2]!;
      if (!ref.startsWith(".")) continue;
      const target = resolve(dirname(file), ref);
      if (!CODE.has(extname(target)) || !(await stat(target).catch(() => undefined))?.isFile()) continue;
      if (!/^\.\/[^/]+$/.test(ref)) {
        throw new Error(
          `${relative(root, file)}: new URL(${JSON.stringify(ref)}, import.meta.url) must name a file in the same directory ("./name.ts") to work inside the compiled binary`,
        );
      }
      found.set(target, relative(root, file));
    }
  }
  return found;
}

function megabytes(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

async function main(): Promise<void> {
  if (runtimeName !== "bun") throw new Error("run this script with bun: bun scripts/compile.ts (npm run compile)");
  const options = parseArgs(process.argv.slice(2));
  const workers = await workerEntries();
  for (const entry of options.entries) workers.set(entry, "--entry");
  const names = new Map<string, string>([[basename(options.outfile), MAIN]]);
  for (const file of workers.keys()) {
    const name = basename(file, extname(file));
    const clash = names.get(name);
    if (clash)
      throw new Error(
        `${relative(root, file)} and ${relative(root, clash)} would both be embedded as ${name}; rename one`,
      );
    names.set(name, file);
  }

  // Built next to the target and renamed over it: a running agent keeps its executable (no ETXTBSY).
  await mkdir(dirname(options.outfile), { recursive: true });
  const stage = await mkdtemp(join(dirname(options.outfile), ".compile-"));
  const staged = join(stage, basename(options.outfile));
  try {
    const args = [
      "build",
      "--compile",
      "--minify",
      ...(options.bytecode ? ["--bytecode"] : []),
      "--format=esm",
      "--entry-naming=[name].[ext]",
      "--no-compile-autoload-dotenv",
      "--no-compile-autoload-bunfig",
      "--compile-autoload-package-json",
      ...(options.target ? [`--target=${options.target}`] : []),
      MAIN,
      ...workers.keys(),
      "--outfile",
      staged,
    ];
    const started = performance.now();
    await exec(process.execPath, args, { cwd: root, timeoutMs: 600_000, env: { NO_COLOR: "1" } });
    const buildMs = performance.now() - started;
    await rename(staged, options.outfile);
    const size = (await stat(options.outfile)).size;
    const out = relative(process.cwd(), options.outfile) || options.outfile;
    process.stdout.write(`${out}: ${megabytes(size)} (${size} bytes), built in ${(buildMs / 1000).toFixed(1)} s\n`);
    for (const [file, by] of workers) process.stdout.write(`  + worker ${relative(root, file)} (loaded by ${by})\n`);
    if (options.target) return; // another platform's binary cannot be started here
    const check = await exec(options.outfile, ["--version"], { timeoutMs: 30_000 });
    process.stdout.write(`  starts: ${check.stdout.trim()}\n`);
  } finally {
    await rm(stage, { recursive: true, force: true });
  }
}

try {
  await main();
} catch (error) {
  process.stderr.write(`compile failed: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exitCode = 1;
}
