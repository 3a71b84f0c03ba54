/**
 * The `"container"` runtime: each node is a container started through Testcontainers (an optional
 * peer dependency, loaded only here). Ports are published at fixed host ports chosen up front, so a
 * node keeps its URL across kill and start; faults go to the container through the Docker API.
 */
import type { Container } from "dockerode";
import pTimeout from "p-timeout";
import type { StartedNetwork, StartedTestContainer } from "testcontainers";
import { freePorts, nodeConfig, startAll } from "./config.js";
import type { NatsTestNode } from "./types.js";

type Testcontainers = typeof import("testcontainers");

const CONFIG_PATH = "/ricochet/nats.conf";
const READY = "Server is ready";

/** Loads the optional `testcontainers` package, or says how to install it. */
export async function loadTestcontainers(): Promise<Testcontainers> {
  try {
    return await import("testcontainers");
  } catch (err) {
    throw new Error(
      "startNats: the container runtime needs the optional package `testcontainers` " +
        "(npm install -D testcontainers; on Node 20 use testcontainers@11). " +
        `Loading it failed: ${(err as Error).message}`,
    );
  }
}

/** Resolves with where the Docker engine is, or rejects saying why none can be used. */
export async function dockerHost(tc: Testcontainers, timeoutMs: number): Promise<string> {
  const client = await pTimeout(tc.getContainerRuntimeClient(), {
    milliseconds: timeoutMs,
    message: `no answer from a Docker engine in ${timeoutMs} ms`,
  });
  return client.info.containerRuntime.host;
}

/** Options the container runtime uses. */
export interface ContainerOptions {
  readonly image: string;
  readonly config: string | undefined;
  readonly startupTimeoutMs: number;
}

/** Counts "Server is ready" lines in everything the container has logged, across its restarts. */
async function readyCount(container: Container): Promise<number> {
  const logs = await container.logs({ stdout: true, stderr: true, follow: false });
  return logs.toString("latin1").split(READY).length - 1;
}

/** Resolves once the container logs its `count`th "Server is ready" line. */
async function readyAt(container: Container, count: number, timeoutMs: number): Promise<void> {
  const stream = await container.logs({ stdout: true, stderr: true, follow: true });
  let text = "";
  const ready = new Promise<void>((resolve, reject) => {
    stream.on("data", (chunk: Buffer) => {
      text += chunk.toString("latin1");
      if (text.split(READY).length - 1 >= count) resolve();
    });
    stream.once("error", reject);
  });
  try {
    await pTimeout(ready, {
      milliseconds: timeoutMs,
      message: `the nats-server container did not become ready in ${timeoutMs} ms`,
    });
  } finally {
    stream.removeAllListeners("data");
    (stream as NodeJS.ReadableStream & { destroy?: () => void }).destroy?.();
  }
}

/** Starts `size` containers (on one Docker network, routed by alias, when more than one). */
export async function startContainerNodes(
  size: number,
  options: ContainerOptions,
): Promise<{ nodes: NatsTestNode[]; close(): Promise<void> }> {
  const tc = await loadTestcontainers();
  const client = await tc.getContainerRuntimeClient();
  const ports = await freePorts(size * 2);
  const names = Array.from({ length: size }, (_, i) => `n${i + 1}`);
  const network: StartedNetwork | undefined = size > 1 ? await new tc.Network().start() : undefined;
  const started: StartedTestContainer[] = [];
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    await Promise.all(
      started.map((s) =>
        client.container
          .getById(s.getId())
          .remove({ force: true, v: true })
          .catch(() => undefined),
      ),
    );
    await network?.stop().catch(() => undefined);
  };

  const nodes = names.map((name, i): NatsTestNode => {
    const port = ports[i * 2] as number;
    const httpPort = ports[i * 2 + 1] as number;
    let container: Container | undefined;
    let running = false;
    const node: NatsTestNode = {
      name,
      url: `nats://127.0.0.1:${port}`,
      port,
      httpPort,
      pid: undefined,
      get running() {
        return running;
      },
      async kill(signal = "SIGKILL") {
        if (container === undefined || !running) return;
        await container.unpause().catch(() => undefined); // a paused container ignores signals
        await container.kill({ signal });
        await container.wait();
        running = false;
      },
      async stop() {
        if (container === undefined || !running) return;
        await container.unpause().catch(() => undefined);
        await container.stop({ t: 10 });
        running = false;
      },
      async start() {
        if (running) return;
        if (container === undefined) {
          let builder = new tc.GenericContainer(options.image)
            .withExposedPorts({ container: 4222, host: port }, { container: 8222, host: httpPort })
            .withCopyContentToContainer([
              {
                target: CONFIG_PATH,
                content: nodeConfig({
                  name,
                  listen: "0.0.0.0:4222",
                  http: "0.0.0.0:8222",
                  storeDir: "/data",
                  cluster:
                    network === undefined
                      ? undefined
                      : {
                          listen: "0.0.0.0:6222",
                          routes: names
                            .filter((n) => n !== name)
                            .map((n) => `nats-route://${n}:6222`),
                        },
                  extra: options.config,
                }),
              },
            ])
            .withCommand(["-c", CONFIG_PATH])
            .withWaitStrategy(tc.Wait.forLogMessage(READY))
            .withStartupTimeout(options.startupTimeoutMs);
          if (network !== undefined)
            builder = builder.withNetwork(network).withNetworkAliases(name);
          const s = await builder.start();
          started.push(s);
          container = client.container.getById(s.getId());
          running = true;
          return;
        }
        const before = await readyCount(container);
        await container.start();
        await readyAt(container, before + 1, options.startupTimeoutMs);
        running = true;
      },
      async restart() {
        await node.stop();
        await node.start();
      },
      async pause() {
        await container?.pause();
      },
      async resume() {
        await container?.unpause();
      },
    };
    return node;
  });
  return startAll(nodes, close);
}
