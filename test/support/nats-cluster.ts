/**
 * Starts a throwaway nats-server cluster on loopback, for tests and the chaos run: each node gets free
 * ports (client, route, monitoring), its own `server_name`, its own JetStream store, and routes to
 * the others. Nodes can be killed, stopped and started again on the same ports and store.
 */
import type { ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { exited, launchServer } from "./nats-server.js";

/** One node of a {@link NatsCluster}. */
export interface ClusterNode {
  /** Its `server_name`: `n1`, `n2`, ... */
  readonly name: string;
  /** `nats://127.0.0.1:<port>` */
  readonly url: string;
  readonly port: number;
  /** The monitoring port (`http://127.0.0.1:<port>/jsz`). */
  readonly httpPort: number;
  /** The process id while it runs. */
  readonly pid: number | undefined;
  readonly running: boolean;
  /** Sends `signal` (default SIGKILL) and waits for the process to exit. */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** Starts it again with the same ports, config and store; resolves once it is ready. */
  start(): Promise<void>;
}

/** A running cluster. */
export interface NatsCluster {
  readonly nodes: readonly ClusterNode[];
  /** Every node's URL, for a connection that may fail over to any of them. */
  readonly urls: string[];
  /** The node named `name`. */
  node(name: string): ClusterNode;
  /**
   * Resolves with the JetStream meta leader's name once every running node reports the same running
   * node as the leader; rejects after `timeoutMs`.
   */
  waitForMetaLeader(timeoutMs?: number): Promise<string>;
  /** The name of the node leading stream `stream` (or undefined while it has none), from monitoring. */
  streamLeader(stream: string): Promise<string | undefined>;
  /** Stops every node and removes the stores. */
  [Symbol.asyncDispose](): Promise<void>;
}

/** Options for {@link startNatsCluster}. */
export interface NatsClusterOptions {
  /** Nodes. @default 3 */
  size?: number;
  /** The server binary. @default "nats-server" */
  binary?: string;
  /** Config text added to every node's config (authorization, limits). */
  extraConfig?: string;
}

/** Ports the OS says are free now (bound and released at once). */
async function freePorts(n: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise<import("node:net").Server>((resolve, reject) => {
          const s = createServer();
          s.once("error", reject);
          s.listen(0, "127.0.0.1", () => resolve(s));
        }),
    ),
  );
  const ports = servers.map((s) => {
    const address = s.address();
    if (address === null || typeof address === "string") throw new Error("no port");
    return address.port;
  });
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  return ports;
}

async function jsz(httpPort: number, query = ""): Promise<Record<string, unknown>> {
  const res = await fetch(`http://127.0.0.1:${httpPort}/jsz${query}`, {
    signal: AbortSignal.timeout(2000),
  });
  return (await res.json()) as Record<string, unknown>;
}

/** Starts a cluster of `size` nodes (3 by default) and waits until JetStream has a meta leader. */
export async function startNatsCluster(options: NatsClusterOptions = {}): Promise<NatsCluster> {
  const size = options.size ?? 3;
  const binary = options.binary ?? "nats-server";
  const root = mkdtempSync(join(tmpdir(), "ricochet-cluster-"));
  const ports = await freePorts(size * 3);
  const specs = Array.from({ length: size }, (_, i) => ({
    name: `n${i + 1}`,
    port: ports[i * 3] as number,
    routePort: ports[i * 3 + 1] as number,
    httpPort: ports[i * 3 + 2] as number,
  }));
  const children = new Map<string, ChildProcess>();
  const nodes: ClusterNode[] = specs.map((spec) => {
    const config = join(root, `${spec.name}.conf`);
    const routes = specs
      .filter((s) => s !== spec)
      .map((s) => `nats-route://127.0.0.1:${s.routePort}`);
    writeFileSync(
      config,
      [
        `server_name: ${spec.name}`,
        `listen: 127.0.0.1:${spec.port}`,
        `http: 127.0.0.1:${spec.httpPort}`,
        `jetstream { store_dir: "${join(root, spec.name)}" }`,
        `cluster { name: ricochet, listen: 127.0.0.1:${spec.routePort}, routes: [${routes.join(", ")}] }`,
        options.extraConfig ?? "",
      ].join("\n"),
    );
    const node: ClusterNode = {
      name: spec.name,
      url: `nats://127.0.0.1:${spec.port}`,
      port: spec.port,
      httpPort: spec.httpPort,
      get pid() {
        return children.get(spec.name)?.pid;
      },
      get running() {
        const c = children.get(spec.name);
        return c !== undefined && c.exitCode === null && c.signalCode === null;
      },
      async kill(signal = "SIGKILL") {
        const child = children.get(spec.name);
        if (child === undefined) return;
        child.kill(signal);
        await exited(child);
      },
      async start() {
        if (node.running) return;
        const { child } = await launchServer(binary, ["-c", config]);
        children.set(spec.name, child);
      },
    };
    return node;
  });
  const killAll = () => {
    for (const c of children.values()) c.kill("SIGKILL");
  };
  process.once("exit", killAll);

  const cluster: NatsCluster = {
    nodes,
    urls: nodes.map((n) => n.url),
    node(name) {
      const found = nodes.find((n) => n.name === name);
      if (found === undefined) throw new Error(`no node named ${name}`);
      return found;
    },
    async waitForMetaLeader(timeoutMs = 20_000) {
      const until = Date.now() + timeoutMs;
      let last = "no node answered";
      for (;;) {
        const running = nodes.filter((n) => n.running);
        const leaders = await Promise.all(
          running.map(async (n) => {
            try {
              const meta = (await jsz(n.httpPort)).meta_cluster as { leader?: string } | undefined;
              return meta?.leader;
            } catch (err) {
              return `error: ${(err as Error).message}`;
            }
          }),
        );
        const first = leaders[0];
        const names = running.map((n) => n.name);
        if (first && names.includes(first) && leaders.every((l) => l === first)) return first;
        last = `running nodes report leaders ${JSON.stringify(leaders)}`;
        if (Date.now() > until) {
          throw new Error(
            `the cluster has no JetStream meta leader after ${timeoutMs} ms: ${last}`,
          );
        }
        // No event exists for "a leader was elected": poll the monitoring endpoint.
        await new Promise((r) => setTimeout(r, 100));
      }
    },
    async streamLeader(stream) {
      for (const n of nodes.filter((x) => x.running)) {
        try {
          const info = await jsz(n.httpPort, "?accounts=true&streams=true");
          const accounts = (info.account_details ?? []) as {
            stream_detail?: { name: string; cluster?: { leader?: string } }[];
          }[];
          for (const a of accounts) {
            const s = a.stream_detail?.find((d) => d.name === stream);
            if (s?.cluster?.leader) return s.cluster.leader;
          }
        } catch {
          // try the next node
        }
      }
      return undefined;
    },
    async [Symbol.asyncDispose]() {
      await Promise.all(nodes.map((n) => n.kill("SIGTERM")));
      process.removeListener("exit", killAll);
      rmSync(root, { recursive: true, force: true });
    },
  };
  try {
    await Promise.all(nodes.map((n) => n.start()));
    await cluster.waitForMetaLeader();
  } catch (err) {
    await cluster[Symbol.asyncDispose]();
    throw err;
  }
  return cluster;
}
