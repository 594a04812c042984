/** `bc-gitops run`: the agent in the foreground, until SIGTERM or SIGINT; SIGHUP re-reads the labels and reconciles. */
import type { CAC } from "cac";
import { agentOptionsOf, createAgent } from "../agent.ts";
import { loadConfig } from "../config.ts";
import { createConsoleLogger } from "../console-logger.ts";
import { VERSION } from "../version.ts";
import { configFlags } from "./flags.ts";

/** Registers `run`: resolves with the exit code once a signal has stopped the agent and its apps. */
export function registerRunCommand(cli: CAC): void {
  configFlags(cli.command("run", "Run the agent in the foreground")).action(run);
}

async function run(options: Record<string, unknown>): Promise<number> {
  const sources = { file: options.config as string | undefined, flags: options };
  const config = await loadConfig(sources);
  const logger = createConsoleLogger({ level: config.log_level, format: config.log_format });
  // Started from a terminal: someone is watching, so a restarted agent polls at once.
  const agent = createAgent({ ...agentOptionsOf(config), logger, jitterFirstTick: !process.stdin.isTTY });
  logger.info(
    `bc-gitops ${VERSION} tracking ${config.branch} of ${config.repo_url} every ${config.reconcile_interval / 1000}s`,
  );
  // Keep the process alive until a signal stops it, whatever else holds the event loop.
  const keepAlive = setInterval(() => {}, 1 << 30);
  const stopped = new Promise<number>((resolveStop) => {
    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) return;
      stopping = true;
      logger.info(`${signal}: stopping apps and the agent`);
      agent.stop().then(
        () => resolveStop(0),
        (error: unknown) => {
          logger.error(`stop failed: ${(error as Error).message}`);
          resolveStop(1);
        },
      );
    };
    process.on("SIGTERM", () => stop("SIGTERM"));
    process.on("SIGINT", () => stop("SIGINT"));
  });
  process.on("SIGHUP", () => {
    // The labels are read again (a label change moves apps); the rest of the configuration needs a restart.
    void loadConfig(sources)
      .then(({ labels }) => {
        if (JSON.stringify(labels) !== JSON.stringify(config.labels)) agent.setLabels((config.labels = labels));
      })
      .catch((error: unknown) => logger.error(`SIGHUP: keeping the labels: ${(error as Error).message}`))
      .then(() => {
        logger.info("SIGHUP: reconciling now");
        return agent.reconcile().catch(() => {});
      });
  });
  try {
    const first = await agent.start();
    logger.info(
      `first reconcile: ${first.status} at ${first.commit?.slice(0, 12) ?? "no commit"} in ${first.duration_ms} ms`,
    );
  } catch (error) {
    clearInterval(keepAlive);
    await agent.stop().catch(() => {});
    throw error;
  }
  const code = await stopped;
  clearInterval(keepAlive);
  return code;
}
