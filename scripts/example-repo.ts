/**
 * Rewrites the files of `examples/gitops-repo/` that `bc-gitops init` writes, from `src/scaffold.ts`,
 * the one copy of the example app: `bun scripts/example-repo.ts` after changing the scaffold.
 * The directory's other apps (`clock`, `legacy_api`) are its own; `test/scaffold.test.ts` fails
 * when the directory and the scaffold differ.
 */
import { fileURLToPath } from "node:url";
import { exampleRepoFiles, writeFiles } from "../src/scaffold.ts";

await writeFiles(fileURLToPath(new URL("../examples/gitops-repo/", import.meta.url)), exampleRepoFiles());
