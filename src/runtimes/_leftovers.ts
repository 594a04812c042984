/**
 * What a previous agent (killed, or crashed) left running: apps nothing would ever start or stop
 * again, e.g. an app whose first deploy was under way when the agent was killed and which was
 * deleted from the repo since. The drivers find them (`Driver.sweep`); this ends them.
 */
import { messageOf } from "../errors.ts";
import type { Logger } from "../logger.ts";
import type { Driver } from "./driver.ts";

/**
 * Ends, through each driver's `sweep`, what a previous agent left running of every app for which
 * `keep` is false, giving each `graceMs` to stop. Reports what it ended; never throws.
 */
export async function endLeftovers(
  drivers: Iterable<Driver | undefined>,
  keep: (app: string) => boolean,
  graceMs: number,
  logger: Logger,
): Promise<void> {
  for (const driver of new Set(drivers)) {
    const swept = await driver?.sweep?.(keep, graceMs).catch((error: unknown) => {
      logger.warn(`cannot end what a previous agent left running: ${messageOf(error)}`);
      return [];
    });
    if (swept?.length) logger.info(`ended what a previous agent left running of ${swept.join(", ")}`);
  }
}
