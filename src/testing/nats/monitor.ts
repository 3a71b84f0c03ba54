/** What the monitoring endpoint says about JetStream leaders, the same for every runtime. */
import type { NatsTestNode } from "./types.js";

async function jsz(httpPort: number, query = ""): Promise<Record<string, unknown>> {
  const res = await fetch(`http://127.0.0.1:${httpPort}/jsz${query}`, {
    signal: AbortSignal.timeout(2000),
  });
  return (await res.json()) as Record<string, unknown>;
}

/** Resolves with the meta leader once every running node names the same running node. */
export async function waitForMetaLeader(
  nodes: readonly NatsTestNode[],
  timeoutMs: number,
): Promise<string> {
  if (nodes.length === 1) return (nodes[0] as NatsTestNode).name;
  const until = Date.now() + timeoutMs;
  let last = "no node answered";
  for (;;) {
    const running = nodes.filter((n) => n.running && n.httpPort !== undefined);
    const leaders = await Promise.all(
      running.map(async (n) => {
        try {
          const meta = (await jsz(n.httpPort as number)).meta_cluster as
            | { leader?: string }
            | undefined;
          return meta?.leader;
        } catch (err) {
          return `error: ${(err as Error).message}`;
        }
      }),
    );
    const first = leaders[0];
    if (first && running.some((n) => n.name === first) && leaders.every((l) => l === first)) {
      return first;
    }
    last = `running nodes report leaders ${JSON.stringify(leaders)}`;
    if (Date.now() > until) {
      throw new Error(`the cluster has no JetStream meta leader after ${timeoutMs} ms: ${last}`);
    }
    // The server publishes no event for "a leader was elected" to an outsider: poll monitoring.
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** The node leading `stream`, from the first running node's monitoring that knows. */
export async function streamLeader(
  nodes: readonly NatsTestNode[],
  stream: string,
): Promise<string | undefined> {
  for (const n of nodes) {
    if (!n.running || n.httpPort === undefined) continue;
    try {
      const info = await jsz(n.httpPort, "?accounts=true&streams=true");
      const accounts = (info.account_details ?? []) as {
        stream_detail?: { name: string; cluster?: { leader?: string } }[];
      }[];
      for (const a of accounts) {
        const s = a.stream_detail?.find((d) => d.name === stream);
        if (s?.cluster?.leader) return s.cluster.leader;
        if (s !== undefined && nodes.length === 1) return n.name;
      }
    } catch {
      // try the next node
    }
  }
  return undefined;
}
