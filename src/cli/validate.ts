/** `bc-gitops validate [path]`: lint a gitops repository offline, optionally as one host of a fleet sees it. */
import { basename, join, resolve } from "node:path";
import type { CAC } from "cac";
import { colors } from "consola/utils";
import { identityOf } from "../fleet/host.ts";
import { runnableApps, type HostedApp } from "../fleet/view.ts";
import { formatIssue, loadApps, resolveAppsDir, type SpecIssue } from "../loader.ts";
import { placementReport } from "../report.ts";
import { checkSecretsFiles } from "../secrets/commands.ts";
import { UsageError, print } from "./output.ts";

interface ValidateOptions {
  strict?: boolean;
  json?: boolean;
  appsDir?: string;
  ageKeyFile?: string;
  host?: string;
  label?: string[];
}

/** Registers `validate`: exit 1 on any error (or warning with --strict), 0 otherwise. */
export function registerValidateCommand(cli: CAC): void {
  cli
    .command("validate [path]", "Lint a gitops repository (or its apps directory) offline; exit 1 on any error")
    .option("--strict", "Treat warnings as errors")
    .option("--json", "Print { apps, errors, warnings } as JSON")
    .option("--apps-dir <dir>", "Apps directory inside the repository (default apps)")
    .option(
      "--age-key-file <file>",
      "age identities to check secrets files' MACs with (also SOPS_AGE_KEY_FILE, SOPS_AGE_KEY)",
    )
    .option("--host <name>", "Show what this host would run: placement, overrides and rollout waves applied")
    .option(
      "--label <key=value>",
      "A label of that host (repeatable; os, arch and runtime default to this machine's)",
      {
        type: [String],
      },
    )
    .action(validate);
}

async function validate(path: string | undefined, options: ValidateOptions): Promise<number> {
  const target = path ?? ".";
  const where = await resolveAppsDir(target, options.appsDir ?? "apps");
  if (!where)
    throw new UsageError(`cannot read ${target}: no such directory; pass a gitops repository or its apps directory`);
  const result = await loadApps(where.appsDir, { root: where.root, strict: options.strict });
  // Secrets files: structure was checked by loading; the MAC too when this host has a key (values never shown).
  const files = result.apps.flatMap(({ spec }) => (spec.secrets?.file ? [spec.secrets.file] : []));
  const secrets = await checkSecretsFiles(files, where.root, { ageKeyFile: options.ageKeyFile });
  result.errors.push(...secrets.errors);
  result.warnings.push(...secrets.warnings);
  const empty = result.apps.length + result.errors.length + result.warnings.length === 0;
  // `validate repo/apps` may name the apps directory itself; a folder that is neither it nor holds
  // it is an error, as for `run`, not "0 valid apps".
  if (
    empty &&
    where.appsDir !== join(target, options.appsDir ?? "apps") &&
    basename(resolve(target)) !== basename(options.appsDir ?? "apps")
  ) {
    throw new UsageError(
      `no apps directory found: ${join(target, options.appsDir ?? "apps")} does not exist and ${target} holds no app specs (<name>/app.yaml); pass the gitops repository or its apps directory (--apps-dir to name it)`,
    );
  }
  // With --host: what that host runs (placement, overrides), planned exactly as its agent would.
  const identity =
    options.host !== undefined || options.label ? identityOf(options.host, options.label ?? []) : undefined;
  const { apps, errors, placement } = runnableApps(result, identity);
  if (options.json) {
    const fleet = placement ? { host: placement.identity.host, labels: placement.identity.labels } : {};
    const notPlaced = placement ? { not_placed: placement.notPlaced } : {};
    print(JSON.stringify({ ...fleet, apps, ...notPlaced, errors, warnings: result.warnings }, null, 2));
  } else {
    if (placement) print(placementReport(placement.identity, apps as HostedApp[], placement.notPlaced));
    for (const issue of errors) print(`${colors.red("error")}   ${formatIssue(issue)}`);
    for (const issue of result.warnings) print(`${colors.yellow("warning")} ${formatIssue(issue)}`);
    print(summary(apps.length, errors, result.warnings));
  }
  return errors.length > 0 ? 1 : 0;
}

function summary(valid: number, errors: SpecIssue[], warnings: SpecIssue[]): string {
  const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? "" : "s"}`;
  const text = `${plural(valid, "valid app")}, ${plural(errors.length, "error")}, ${plural(warnings.length, "warning")}`;
  return errors.length ? colors.red(`✖ ${text}`) : colors.green(`✔ ${text}`);
}
