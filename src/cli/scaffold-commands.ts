/** `bc-gitops init`, `demo` and `schema`: getting started without an agent running (a new repository, a tour, the spec's JSON Schema). */
import type { CAC } from "cac";
import { colors } from "consola/utils";
import { createConsoleLogger } from "../console-logger.ts";
import { runDemo } from "../demo.ts";
import { scaffold } from "../scaffold.ts";
import { appSpecJsonSchema } from "../spec.ts";
import { print } from "./output.ts";

/** Registers `init [dir]`, `demo` and `schema`, in that order (the order of `--help`). */
export function registerScaffoldCommands(cli: CAC): void {
  cli.command("init [dir]", "Create a gitops repository with one example app that runs").action(init);
  cli
    .command("demo", "A self-contained tour on a throwaway local gitops repository (no network)")
    .option("--keep", "Keep the temp directory afterwards")
    .option("--verbose", "Show the agent's log")
    .action(demo);
  cli
    .command("schema", "Print the JSON Schema of the app spec (for editors and the YAML language server)")
    .action(() => {
      print(JSON.stringify(appSpecJsonSchema(), null, 2));
      return 0;
    });
}

async function init(dir: string | undefined): Promise<number> {
  const target = dir ?? "gitops";
  const { commit, files } = await scaffold(target);
  print(`created ${target} (${files.length} files, commit ${commit.slice(0, 12)}):`);
  for (const file of files) print(`  ${file}`);
  print(`\nrun it:  bc-gitops run --repo-url ${target}\nthen:    curl http://127.0.0.1:8080/?name=you`);
  return 0;
}

/** Exit 1 when any step's action failed. */
async function demo(options: { keep?: boolean; verbose?: boolean }): Promise<number> {
  print(colors.bold("bc-gitops demo: a throwaway gitops repository and a real agent, nothing leaves this machine\n"));
  const started = performance.now();
  const { dir, steps } = await runDemo({
    keep: options.keep,
    logger: options.verbose ? createConsoleLogger({ level: "info", format: "pretty" }) : undefined,
    onStep(step) {
      if (!step.result) {
        print(`${colors.cyan(`${step.index}/${step.total} ${step.title}`)}  ${colors.dim(step.change)}`);
        print(colors.dim("    … committing and reconciling"));
        return;
      }
      for (const action of step.result.actions) {
        const mark = action.outcome === "ok" ? colors.green("✔") : colors.red("✖");
        print(
          `    ${mark} ${action.type} ${action.app}${action.error ? `: ${action.error}` : ""} ${colors.dim(`(${action.duration_ms ?? 0} ms)`)}`,
        );
      }
      print(`    app answers: ${step.answer}`);
      print(
        colors.dim(
          `    commit ${step.commit?.slice(0, 12)} applied and answered in ${step.ms} ms; agent ${step.result.status}\n`,
        ),
      );
    },
  });
  const failed = steps.some((s) => s.result?.actions.some((a) => a.outcome !== "ok"));
  print(
    `${failed ? colors.red("✖ the demo hit a failure (see above)") : colors.green("✔ demo complete")} in ${Math.round(performance.now() - started)} ms; ${options.keep ? `kept ${dir}` : "cleaned up"}`,
  );
  return failed ? 1 : 0;
}
