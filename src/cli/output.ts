/** How the CLI's commands talk to the person at the terminal: one line at a time, and errors they can act on. */

/** An error the user can act on: printed as one line, no stack trace. */
export class UsageError extends Error {}

/** Prints one line on stdout. */
export function print(text: string): void {
  process.stdout.write(`${text}\n`);
}
