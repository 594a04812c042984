#!/usr/bin/env node
/**
 * The bc-gitops command line: the cac setup, each command group registered from `src/cli/`, and
 * `main`. The CLI (this file and `src/cli/`) is the only code that prints for humans, and this file
 * the only one that sets the exit code; everything the commands do is a call into the library.
 */
import { cac } from "cac";
import { colors } from "consola/utils";
import { runtimeName, runtimeVersion } from "./_platform.ts";
import { registerClientCommands } from "./cli/client-commands.ts";
import { registerFleetCommand } from "./cli/fleet.ts";
import { UsageError, print } from "./cli/output.ts";
import { registerPlanCommand } from "./cli/plan.ts";
import { registerRunCommand } from "./cli/run.ts";
import { registerScaffoldCommands } from "./cli/scaffold-commands.ts";
import { registerSecretsCommand } from "./cli/secrets.ts";
import { registerStreamCommands } from "./cli/stream-commands.ts";
import { registerValidateCommand } from "./cli/validate.ts";
import { VERSION } from "./version.ts";

const cli = cac("bc-gitops");
cli.option("--debug", "Print stack traces on errors");

// The order of registration is the order of `--help`.
registerValidateCommand(cli); // validate
registerSecretsCommand(cli); // secrets
registerRunCommand(cli); // run
registerClientCommands(cli); // status, reconcile, reload
registerStreamCommands(cli); // events, logs
registerPlanCommand(cli); // plan
registerFleetCommand(cli); // fleet
registerScaffoldCommands(cli); // init, demo, schema

cli.help();
cli.version(VERSION);
// cac prints `process.version`, which Bun and Deno set to the Node version they are compatible with.
cli.globalCommand.outputVersion = () =>
  print(`bc-gitops/${VERSION} ${process.platform}-${process.arch} ${runtimeName}-v${runtimeVersion}`);

/**
 * cac turns numeric-looking values into numbers (`--branch 1.10` would become 1.1, `--token 123`
 * a number); options are text, so put back exactly what was typed.
 */
function keepRawValues(options: Record<string, unknown>, argv: readonly string[]): void {
  for (const [key, value] of Object.entries(options)) {
    if (typeof value !== "number") continue;
    const flag = `--${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
    for (let i = 0; i < argv.length; i++) {
      if (argv[i] === flag && i + 1 < argv.length) options[key] = argv[i + 1];
      else if (argv[i]!.startsWith(`${flag}=`)) options[key] = argv[i]!.slice(flag.length + 1);
    }
  }
}

async function main(argv: string[]): Promise<number> {
  try {
    cli.parse(argv, { run: false });
    keepRawValues(cli.options, argv);
    if (cli.options.help || cli.options.version) return 0;
    if (!cli.matchedCommand) {
      if (cli.args.length > 0) throw new UsageError(`unknown command "${cli.args[0]}"; run bc-gitops --help`);
      cli.outputHelp();
      return 0;
    }
    const code = await cli.runMatchedCommand();
    return typeof code === "number" ? code : 0;
  } catch (error) {
    const debug = argv.includes("--debug");
    const message = error instanceof Error ? error.message : String(error);
    process.stderr.write(`${colors.red("error")} ${message}\n`);
    if (debug && error instanceof Error && error.stack) process.stderr.write(`${error.stack}\n`);
    return 1;
  }
}

process.exitCode = await main(process.argv);
