/** Runs the bc-gitops CLI from source as a real child process, with the runtime running the tests. */
import { fileURLToPath } from "node:url";
import { runtimeName } from "../../src/_platform.ts";
import { exec, type ExecOptions, type ExecResult } from "../../src/exec.ts";

const CLI = fileURLToPath(new URL("../../src/cli.ts", import.meta.url));

/** The argv that starts the CLI under the current runtime (Bun: `bun cli.ts`, Deno: `deno run -A cli.ts`). */
export function cliCommand(): [string, string[]] {
  return [process.execPath, [...(runtimeName === "deno" ? ["run", "-A"] : []), CLI]];
}

/** Runs `bc-gitops <args>`; resolves with its output whatever the exit code. */
export async function runCli(args: readonly string[], options: ExecOptions = {}): Promise<ExecResult> {
  const [command, prefix] = cliCommand();
  return exec(command, [...prefix, ...args], {
    timeoutMs: 60_000,
    allowExitCodes: [0, 1, 2],
    ...options,
    env: { NO_COLOR: "1", FORCE_COLOR: "0", ...options.env },
  });
}
