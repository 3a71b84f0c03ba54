/**
 * `startNats`: a nats-server with JetStream for a test, in a container when Docker is there, else
 * from the local binary, else the server at `NATS_URL`.
 */
import { startBinaryNodes } from "./binary.js";
import { clusterSize } from "./config.js";
import { dockerHost, loadTestcontainers, startContainerNodes } from "./container.js";
import { streamLeader, waitForMetaLeader } from "./monitor.js";
import type { NatsRuntime, NatsTestNode, NatsTestServer, StartNatsOptions } from "./types.js";

const DEFAULT_IMAGE = "nats:2.11";

function env(name: string): string | undefined {
  const value = process.env[name];
  return value === undefined || value === "" ? undefined : value;
}

function runtimeOption(options: StartNatsOptions): NatsRuntime {
  const runtime = options.runtime ?? env("RICOCHET_NATS_RUNTIME") ?? "auto";
  if (!["auto", "container", "binary", "external"].includes(runtime)) {
    throw new RangeError(
      `startNats: runtime must be "auto", "container", "binary" or "external", got ${JSON.stringify(runtime)} ` +
        "(from the option, or RICOCHET_NATS_RUNTIME)",
    );
  }
  return runtime as NatsRuntime;
}

/** A server that is not ours: used as it is; asking it to fail says so. */
function externalNode(url: string): NatsTestNode {
  const refuse = async (): Promise<never> => {
    throw new Error(
      `startNats: the server at ${url} is external (NATS_URL); it cannot be stopped, killed, paused ` +
        'or restarted from a test. Use runtime "binary" or "container" for fault tests.',
    );
  };
  const port = Number(/:(\d+)\s*$/.exec(url.split(",")[0] ?? "")?.[1] ?? 4222);
  return {
    name: "external",
    url,
    port,
    httpPort: undefined,
    running: true,
    pid: undefined,
    kill: refuse,
    stop: refuse,
    start: async () => undefined,
    restart: refuse,
    pause: refuse,
    resume: refuse,
  };
}

function assemble(
  runtime: NatsTestServer["runtime"],
  description: string,
  nodes: NatsTestNode[],
  close: () => Promise<void>,
): NatsTestServer {
  const all = async (f: (n: NatsTestNode) => Promise<void>) => {
    await Promise.all(nodes.map(f));
  };
  return {
    runtime,
    description,
    url: (nodes[0] as NatsTestNode).url,
    urls: nodes.map((n) => n.url),
    nodes,
    node(name) {
      const found = nodes.find((n) => n.name === name);
      if (found === undefined) {
        throw new Error(`startNats: no node named ${name} (nodes: ${nodes.map((n) => n.name)})`);
      }
      return found;
    },
    stop: () => all((n) => n.stop()),
    kill: () => all((n) => n.kill()),
    start: () => all((n) => n.start()),
    async restart() {
      await all((n) => n.stop());
      await all((n) => n.start());
    },
    waitForMetaLeader: (timeoutMs = 20_000) => waitForMetaLeader(nodes, timeoutMs),
    streamLeader: (stream) => streamLeader(nodes, stream),
    close,
    [Symbol.asyncDispose]: close,
  };
}

/**
 * Starts the nodes of one runtime and, for a cluster, waits for a meta leader; a failure closes what
 * started. `kind` names a node in the description ("container", "process").
 */
async function launch(
  runtime: "container" | "binary",
  kind: string,
  source: string,
  why: string,
  timeoutMs: number,
  start: () => Promise<{ nodes: NatsTestNode[]; close(): Promise<void> }>,
): Promise<NatsTestServer> {
  const { nodes, close } = await start();
  const what =
    nodes.length === 1
      ? `1 ${kind}`
      : `a cluster of ${nodes.length} ${kind === "process" ? "processes" : "containers"}`;
  const urls = nodes.map((n) => n.url).join(",");
  const server = assemble(
    runtime,
    `nats-server: ${what} of ${source} at ${urls} (${why})`,
    nodes,
    close,
  );
  if (nodes.length > 1) {
    try {
      await server.waitForMetaLeader(timeoutMs);
    } catch (err) {
      await server.close();
      throw err;
    }
  }
  return server;
}

function startContainer(options: StartNatsOptions, size: number, why: string) {
  const image = options.image ?? env("RICOCHET_NATS_IMAGE") ?? DEFAULT_IMAGE;
  const startupTimeoutMs = options.startupTimeoutMs ?? 30_000;
  return launch("container", "container", image, why, startupTimeoutMs, () =>
    startContainerNodes(size, { image, config: options.config, startupTimeoutMs }),
  );
}

function startBinary(options: StartNatsOptions, size: number, why: string) {
  const binary = options.binary ?? env("NATS_SERVER_BIN") ?? "nats-server";
  const startupTimeoutMs = options.startupTimeoutMs ?? 30_000;
  return launch("binary", "process", binary, why, startupTimeoutMs, () =>
    startBinaryNodes(size, {
      binary,
      wrap: options.wrap ?? [],
      config: options.config,
      startupTimeoutMs,
    }),
  );
}

function startExternal(options: StartNatsOptions, size: number, why: string): NatsTestServer {
  const url = options.url ?? env("NATS_URL");
  if (url === undefined) {
    throw new Error(
      'startNats: runtime "external" needs a server URL: set NATS_URL or the url option',
    );
  }
  if (size > 1 || options.config !== undefined) {
    throw new Error(
      `startNats: the external server at ${url} cannot be given a config or made a cluster; ` +
        'use runtime "container" or "binary" for those',
    );
  }
  return assemble(
    "external",
    `nats-server: the external one at ${url} (${why})`,
    [externalNode(url)],
    async () => undefined,
  );
}

/** Whether the local binary runs (`nats-server --version`). */
async function binaryWorks(binary: string): Promise<boolean> {
  const { execFile } = await import("node:child_process");
  return new Promise((resolve) => {
    execFile(binary, ["--version"], { timeout: 5000 }, (err) => resolve(err === null));
  });
}

/**
 * Starts a nats-server with JetStream for a test, and resolves once it is ready.
 *
 * With the default `runtime: "auto"` it uses the first of these that works:
 * 1. a container through Testcontainers, when the optional `testcontainers` package is installed
 *    and a Docker engine answers (image: `RICOCHET_NATS_IMAGE`, else the official `nats:2.11`);
 * 2. the local `nats-server` binary;
 * 3. the running server at `NATS_URL` (which cannot be configured, clustered or failed on demand).
 *
 * {@link NatsTestServer.description} says which one runs and why. Set `RICOCHET_NATS_RUNTIME` (or
 * the `runtime` option) to insist on one; then a failure is an error, not a fallback.
 *
 * @example
 * ```ts
 * await using nats = await startNats({ cluster: true });
 * const nc = await connect({ servers: nats.urls });
 * await nats.node("n2").kill(); // a node crashes
 * await nats.node("n2").start(); // and comes back with its store
 * ```
 */
export async function startNats(options: StartNatsOptions = {}): Promise<NatsTestServer> {
  const runtime = runtimeOption(options);
  const size = clusterSize(options.cluster);
  if (runtime === "container")
    return startContainer(options, size, "runtime container was asked for");
  if (runtime === "binary") return startBinary(options, size, "runtime binary was asked for");
  if (runtime === "external") return startExternal(options, size, "runtime external was asked for");

  const skipped: string[] = [];
  try {
    const tc = await loadTestcontainers();
    const host = await dockerHost(tc, 10_000);
    try {
      return await startContainer(options, size, `Docker at ${host}`);
    } catch (err) {
      skipped.push(`the container did not start: ${(err as Error).message.split("\n")[0]}`);
    }
  } catch (err) {
    skipped.push((err as Error).message.split("\n")[0] as string);
  }
  const binary = options.binary ?? env("NATS_SERVER_BIN") ?? "nats-server";
  if (await binaryWorks(binary)) {
    return startBinary(options, size, `no container: ${skipped.join("; ")}`);
  }
  skipped.push(`${binary} is not on PATH`);
  if ((options.url ?? env("NATS_URL")) !== undefined) {
    return startExternal(options, size, `no container and no binary: ${skipped.join("; ")}`);
  }
  throw new Error(
    `startNats: no way to run a nats-server here (${skipped.join("; ")}). ` +
      "Install Docker and the `testcontainers` package, or the nats-server binary " +
      "(`apt-get install nats-server`, `brew install nats-server`), or set NATS_URL to a running server.",
  );
}
