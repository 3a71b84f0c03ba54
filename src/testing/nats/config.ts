/** The config text every runtime gives its nodes, and the free ports they listen on. */
import { createServer, type Server } from "node:net";

/** What {@link nodeConfig} writes for one node. */
export interface NodeConfig {
  readonly name: string;
  /** `host:port` for clients. */
  readonly listen: string;
  /** `host:port` for monitoring. */
  readonly http: string;
  readonly storeDir: string;
  /** The cluster: where this node listens for routes and the routes to its peers; absent alone. */
  readonly cluster?: { readonly listen: string; readonly routes: readonly string[] } | undefined;
  /** The user's config text, appended. */
  readonly extra?: string | undefined;
}

/** nats-server config text for one node, with JetStream on. */
export function nodeConfig(c: NodeConfig): string {
  const lines = [
    `server_name: ${c.name}`,
    `listen: "${c.listen}"`,
    `http: "${c.http}"`,
    `jetstream { store_dir: "${c.storeDir}" }`,
  ];
  if (c.cluster !== undefined) {
    // no_advertise: clients learn no node addresses from the cluster, only the URLs they were given
    // (a container's own address is not one a test should reach).
    const routes = c.cluster.routes.map((r) => `"${r}"`).join(", ");
    lines.push(
      `cluster { name: ricochet, listen: "${c.cluster.listen}", no_advertise: true, routes: [${routes}] }`,
    );
  }
  if (c.extra !== undefined) lines.push(c.extra);
  return `${lines.join("\n")}\n`;
}

/** `n` ports that are free on 127.0.0.1 now (bound and released at once). */
export async function freePorts(n: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise<Server>((resolve, reject) => {
          const s = createServer();
          s.once("error", reject);
          s.listen(0, "127.0.0.1", () => resolve(s));
        }),
    ),
  );
  const ports = servers.map((s) => {
    const address = s.address();
    if (address === null || typeof address === "string") throw new Error("no port was assigned");
    return address.port;
  });
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  return ports;
}

/** The node count `cluster` asks for: 1, or at least 3. */
export function clusterSize(cluster: boolean | number | undefined): number {
  if (cluster === undefined || cluster === false) return 1;
  if (cluster === true) return 3;
  if (!Number.isInteger(cluster) || cluster < 3) {
    throw new RangeError(
      `startNats: cluster must be true or a node count of at least 3 (JetStream needs a quorum), got ${cluster}`,
    );
  }
  return cluster;
}

/** Starts every node; if one fails, closes them all and rethrows. */
export async function startAll<N extends { start(): Promise<void> }>(
  nodes: N[],
  close: () => Promise<void>,
): Promise<{ nodes: N[]; close(): Promise<void> }> {
  try {
    await Promise.all(nodes.map((n) => n.start()));
  } catch (err) {
    await close();
    throw err;
  }
  return { nodes, close };
}
