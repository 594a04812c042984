import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseAllDocuments } from "yaml";
import { loggingRuntime, startHost } from "../examples/embedding/server.ts";
import { loadConfig } from "../src/config.ts";
import type { Runtime } from "../src/runtime.ts";
import { controlApiAddress } from "../src/server.ts";
import { gitopsRepo } from "./helpers/gitops-repo.ts";
import { tempDir } from "./helpers/tmp.ts";

const EXAMPLES = fileURLToPath(new URL("../examples/", import.meta.url));
const read = (path: string) => readFile(join(EXAMPLES, path), "utf8");

async function getText(url: string, init?: RequestInit): Promise<{ status: number; body: string }> {
  const response = await fetch(url, { ...init, signal: AbortSignal.timeout(30_000) });
  return { status: response.status, body: await response.text() };
}

/** `Key=value` lines of a systemd unit, all values of each key in order. */
function unitKeys(text: string): Map<string, string[]> {
  const keys = new Map<string, string[]>();
  for (const line of text.split("\n")) {
    const match = /^([A-Za-z]+)=(.*)$/.exec(line);
    if (match) keys.set(match[1]!, [...(keys.get(match[1]!) ?? []), match[2]!]);
  }
  return keys;
}

/** The variables an EnvironmentFile sets (comments and blank lines skipped). */
function envFile(text: string): Record<string, string> {
  return Object.fromEntries(
    text
      .split("\n")
      .filter((l) => /^[A-Z_][A-Z0-9_]*=/.test(l))
      .map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]),
  );
}

/** The parts of a pod's container the sidecar test reads. */
interface Container {
  name: string;
  restartPolicy?: string;
  args?: string[];
  env?: { name: string; value?: string; valueFrom?: { secretKeyRef: { name: string; key: string } } }[];
  ports?: { name?: string; containerPort: number }[];
  volumeMounts: { name: string; mountPath: string; readOnly?: boolean }[];
  securityContext?: { runAsUser?: number };
}

test("the embedding example serves its own routes and the agent's API, and logs each deploy through its wrapping runtime", async (t) => {
  const repo = await gitopsRepo(t, {
    "apps/web/app.yaml": 'name: web\nversion: "1.0.0"\nsource: { type: path, path: code/web }\nenv: { port: 0 }\n',
    "code/web/package.json": '{ "name": "web", "version": "1.0.0", "type": "module", "main": "server.js" }',
    "code/web/server.js": 'export default { fetch: () => new Response("web app") };\n',
  });
  const localPath = join(repo.root, "local");
  const lines: string[] = [];
  const host = await startHost({ repoUrl: repo.bare, localPath, port: 0, log: (line) => lines.push(line) });
  let closed = false;
  t.after(() => closed || host.close());
  assert.equal(host.first.status, "synced", lines.join("\n"));

  assert.deepEqual(await getText(`${host.url}/`), { status: 200, body: "the existing program\n" });
  const status = JSON.parse((await getText(`${host.url}/gitops/status`)).body);
  assert.equal(status.status, "synced");
  assert.equal(status.app_count, 1);
  const app = JSON.parse((await getText(`${host.url}/gitops/apps/web`)).body);
  assert.deepEqual(await getText(`http://127.0.0.1:${app.port}/`), { status: 200, body: "web app" });
  assert.ok(
    lines.some((l) => /^\[runtime\] deploy web 1\.0\.0: running, revision [0-9a-f]{40} in \d+ ms$/.test(l)),
    lines.join("\n"),
  );

  await repo.commit({
    "apps/web/app.yaml": 'name: web\nversion: "1.0.1"\nsource: { type: path, path: code/web }\nenv: { port: 0 }\n',
  });
  const tick = await getText(`${host.url}/gitops/reconcile`, { method: "POST" });
  assert.equal(tick.status, 200, tick.body);
  assert.ok(
    lines.some((l) => l.startsWith("[runtime] upgrade web 1.0.0 -> 1.0.1: running")),
    lines.join("\n"),
  );

  closed = true;
  await host.close();
  // stopAll was forwarded: shutdown stopped the app without removing it (and its workspace).
  assert.ok(!lines.some((l) => l.startsWith("[runtime] remove web")), lines.join("\n"));
  assert.ok((await stat(join(localPath, "workspace", "web"))).isDirectory());
});

test("the example's logging runtime forwards exactly the optional methods the wrapped runtime has", async () => {
  const required = {
    deploy: async () => ({ name: "a", version: "1", status: "running" as const, health: "healthy" as const }),
    remove: async () => {},
    upgrade: async () => ({ name: "a", version: "2", status: "running" as const, health: "healthy" as const }),
    reconfigure: async () => ({ name: "a", version: "1", status: "running" as const, health: "healthy" as const }),
    getCurrentState: async () => ({}),
  };
  const optional = ["hotReload", "resolveRevision", "restart", "stopAll"] as const;
  const full: Runtime = {
    ...required,
    hotReload: async () => ({ app: "a", revision: "r", modules: [] }),
    resolveRevision: async () => "r",
    restart: required.deploy,
    stopAll: async () => {},
  };
  for (const [inner, expected] of [
    [required, false],
    [full, true],
  ] as const) {
    const wrapped = loggingRuntime(inner, () => {});
    for (const method of optional) assert.equal(typeof wrapped[method] === "function", expected, method);
  }
  const lines: string[] = [];
  const failing = loggingRuntime(
    {
      ...required,
      deploy: async () => {
        throw new Error("no space left");
      },
    },
    (l) => lines.push(l),
  );
  await assert.rejects(failing.deploy({ name: "a", version: "1" } as never), /no space left/);
  assert.deepEqual(lines, ["deploy a 1 failed: no space left"]);
});

test("the systemd unit, its configuration file and its environment file agree and load", async () => {
  const unit = unitKeys(await read("systemd/bc-gitops.service"));
  const one = (key: string) => {
    const values = unit.get(key);
    assert.equal(values?.length, 1, `${key} is set once`);
    return values![0]!;
  };
  const configDir = `/etc/${one("ConfigurationDirectory")}`;
  const configFile = /--config (\S+)/.exec(one("ExecStart"))?.[1];
  assert.equal(configFile, `${configDir}/bc-gitops.yaml`);
  assert.equal(one("EnvironmentFile"), `-${configDir}/bc-gitops.env`);
  const env = envFile(await read("systemd/bc-gitops.env"));
  const config = await loadConfig({ file: join(EXAMPLES, "systemd", "bc-gitops.yaml"), env });
  const stateDir = `/var/lib/${one("StateDirectory")}`;
  assert.equal(config.local_path, stateDir, "local_path is the unit's StateDirectory");
  assert.ok(one("ReadWritePaths").split(/\s+/).includes(config.local_path));
  assert.ok(unit.get("Environment")?.includes(`HOME=${stateDir}`));
  assert.equal(config.token, env.BC_GITOPS_TOKEN);
  assert.equal(config.webhook_secret, env.BC_GITOPS_WEBHOOK_SECRET);
  assert.doesNotThrow(() => controlApiAddress(config.listen, config.token));
  // The agent stops its apps itself on SIGTERM; the whole cgroup is killed only after that.
  assert.equal(one("KillMode"), "mixed");
  assert.equal(one("Restart"), "on-failure");
  assert.ok(Number.parseInt(one("TimeoutStopSec"), 10) >= 30);
  assert.equal(one("NoNewPrivileges"), "yes");
  assert.equal(one("ProtectSystem"), "strict");
  assert.equal(unit.has("MemoryDenyWriteExecute"), false, "the JIT needs writable+executable memory");
});

test("the sidecar pod spec parses, matches the Dockerfile, and configures an agent that would start", async (t) => {
  const docs = parseAllDocuments(await read("sidecar/pod.yaml"));
  assert.ok(Array.isArray(docs));
  for (const doc of docs) assert.deepEqual(doc.errors, []);
  const [secret, pod] = docs.map((doc) => doc.toJS()) as [
    { kind: string; metadata: { name: string }; stringData: Record<string, string> },
    {
      kind: string;
      spec: {
        initContainers: Container[];
        containers: Container[];
        volumes: { name: string }[];
        securityContext: { fsGroup: number };
      };
    },
  ];
  assert.deepEqual([secret.kind, pod.kind], ["Secret", "Pod"]);
  const agent = pod.spec.initContainers.find((c) => c.name === "bc-gitops")!;
  assert.equal(agent.restartPolicy, "Always", "a native sidecar");
  assert.deepEqual(agent.args, ["run"]);

  const dockerfile = await read("sidecar/Dockerfile");
  assert.match(dockerfile, /^COPY --from=build \/src\/dist\/bc-gitops \/usr\/local\/bin\/bc-gitops$/m);
  assert.match(dockerfile, /^ENTRYPOINT \[.*"\/usr\/local\/bin\/bc-gitops"\]$/m);
  assert.match(dockerfile, /apt-get install .*\bgit\b/);
  const uid = Number(/--uid (\d+)/.exec(dockerfile)?.[1]);
  assert.equal(agent.securityContext?.runAsUser, uid);
  assert.equal(pod.spec.securityContext.fsGroup, uid);
  const imageLocalPath = /BC_GITOPS_LOCAL_PATH=(\S+)/.exec(dockerfile)?.[1];

  const env: Record<string, string> = {};
  for (const { name, value, valueFrom } of agent.env ?? []) {
    if (valueFrom) {
      assert.equal(valueFrom.secretKeyRef.name, secret.metadata.name);
      env[name] = secret.stringData[valueFrom.secretKeyRef.key]!;
    } else env[name] = value!;
  }
  const empty = join(await tempDir(t), "none.yaml");
  await writeFile(empty, "");
  const config = await loadConfig({ file: empty, env });
  assert.equal(config.local_path, imageLocalPath);
  assert.ok(
    agent.volumeMounts.some((m) => m.mountPath === config.local_path),
    "local_path is on a volume",
  );
  assert.doesNotThrow(() => controlApiAddress(config.listen, config.token), "a non-loopback listen has its token");
  assert.equal(
    Number(config.listen.split(":").pop()),
    agent.ports?.find((p) => p.name === "gitops-api")?.containerPort,
  );

  const volumes = new Set(pod.spec.volumes.map((v) => v.name));
  for (const container of [...pod.spec.initContainers, ...pod.spec.containers]) {
    for (const mount of container.volumeMounts)
      assert.ok(volumes.has(mount.name), `${container.name}: volume ${mount.name} exists`);
  }
  const shared = pod.spec.containers.flatMap((c) => c.volumeMounts).find((m) => m.name === "shared");
  assert.equal(shared?.readOnly, true, "the main container reads what the apps write");
});
