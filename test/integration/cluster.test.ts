/**
 * ricochet on a 3-node nats-server cluster, with JetStream on 3 replicas: a client on node 1,
 * responders on nodes 2 and 3, each given all three URLs. Calls go across nodes, and nodes are killed
 * with SIGKILL during load. Every call must settle within its deadline, durable calls must complete,
 * and each id's effect must happen once. Effects are recorded in the test, outside the responders.
 */
import { type JetStreamManager, jetstream, jetstreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/nats-core";
import { connect } from "@nats-io/transport-node";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { createClient } from "../../src/client.js";
import { kvDedupe } from "../../src/dedupe/kv.js";
import type { DedupeStore } from "../../src/dedupe/types.js";
import { isRpcError } from "../../src/errors.js";
import { createResponder } from "../../src/responder.js";
import { type NatsTestServer as NatsCluster, startNats } from "../../src/testing/nats/index.js";
import { jetstreamQueue, streamNames } from "../../src/transport/jetstream.js";
import { natsTransport } from "../../src/transport/nats.js";
import { billing, billingHandlers } from "../fixtures/billing.js";

const names = streamNames(billing.service);
const TIMEOUT_MS = 30_000;

describe("on a 3-node cluster", () => {
  let cluster: NatsCluster;
  let jsm: JetStreamManager;
  let admin: NatsConnection;
  const cleanup: Array<() => Promise<unknown>> = [];
  let bucket = 0;

  beforeAll(async () => {
    cluster = await startNats({ cluster: true });
    admin = await connect({ servers: cluster.urls, maxReconnectAttempts: -1 });
    jsm = await jetstreamManager(admin);
  });
  afterAll(async () => {
    await admin?.close();
    await cluster?.[Symbol.asyncDispose]();
  });
  afterEach(async () => {
    for (const c of cleanup.splice(0).reverse()) await c().catch(() => undefined);
    // Every node back, and a meta leader, before the next test.
    for (const node of cluster.nodes) await node.start();
    await cluster.waitForMetaLeader();
    for (const name of [names.commands, names.deadLetters]) {
      await jsm.streams.delete(name).catch(() => undefined);
    }
  });

  /** A connection that prefers node `first` (1-based) and fails over to the others. */
  async function connectTo(first: number): Promise<NatsConnection> {
    const urls = cluster.urls.slice(first - 1).concat(cluster.urls.slice(0, first - 1));
    const nc = await connect({
      servers: urls,
      noRandomize: true,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 250,
    });
    cleanup.push(() => nc.close());
    return nc;
  }

  /** A fresh KV bucket with 3 replicas, for a dedupe store shared by both responders. */
  async function sharedBucket() {
    const name = `ricochet-cluster-${++bucket}`;
    await new Kvm(admin).create(name, { replicas: 3, history: 1, ttl: 120_000 });
    cleanup.push(() => new Kvm(admin).open(name).then((kv) => kv.destroy()));
    return name;
  }

  /** Responders on nodes 2 and 3; each call's effect is counted here, by id. */
  async function responders(opts: { bucket?: string; durable?: boolean }) {
    const effects = new Map<string, number>();
    const servedBy = [0, 0];
    for (const [i, node] of [2, 3].entries()) {
      const nc = await connectTo(node);
      let dedupe: DedupeStore | undefined;
      if (opts.bucket !== undefined) {
        const store = kvDedupe(await new Kvm(nc).open(opts.bucket), { leaseMs: 10_000 });
        cleanup.push(async () => store.close());
        dedupe = store;
      }
      const r = createResponder(
        billing,
        {
          ...billingHandlers,
          echo: async ({ text }) => {
            await new Promise((resolve) => setTimeout(resolve, 5));
            effects.set(text, (effects.get(text) ?? 0) + 1);
            servedBy[i] = (servedBy[i] ?? 0) + 1;
            return { text };
          },
        },
        {
          transport: natsTransport(nc),
          discovery: false,
          ...(dedupe === undefined ? {} : { dedupe }),
          ...(opts.durable
            ? { durable: jetstreamQueue(jetstream(nc), { replicas: 3, ackWaitMs: 10_000 }) }
            : {}),
        },
      );
      await r.start();
      cleanup.push(() => r.stop());
    }
    return { effects, servedBy };
  }

  /**
   * Makes `total` calls from node 1, `inFlight` at a time, each with its own id; calls `at(done)`
   * after each settles (to inject a fault mid-load). Resolves with every outcome and latency.
   */
  async function load(opts: {
    total: number;
    inFlight: number;
    durable?: boolean;
    at?: (settled: number) => void | Promise<void>;
  }) {
    const nc = await connectTo(1);
    const transport = natsTransport(nc);
    const client = createClient(billing, {
      transport,
      timeoutMs: TIMEOUT_MS,
      ...(opts.durable
        ? {
            durable: {
              queue: jetstreamQueue(jetstream(nc), { replicas: 3, ackWaitMs: 10_000 }),
              methods: ["echo"],
            },
          }
        : {}),
    });
    cleanup.push(() => client.close());
    const outcomes = new Map<string, string>();
    const latencies: number[] = [];
    const faults: Promise<unknown>[] = [];
    let next = 0;
    let settled = 0;
    const worker = async () => {
      while (next < opts.total) {
        const id = `call-${next++}`;
        const started = Date.now();
        try {
          const out = await client.echo({ text: id }, { id });
          outcomes.set(id, out.text === id ? "OK" : `WRONG ${out.text}`);
        } catch (err) {
          outcomes.set(id, isRpcError(err) ? err.code : String(err));
        }
        latencies.push(Date.now() - started);
        const fault = opts.at?.(++settled);
        if (fault) faults.push(fault);
      }
    };
    await Promise.all(Array.from({ length: opts.inFlight }, worker));
    await Promise.all(faults);
    return { outcomes, latencies };
  }

  /** Asserts every call succeeded within its deadline and ran its effect once. */
  function expectOnce(
    result: { outcomes: Map<string, string>; latencies: number[] },
    effects: Map<string, number>,
    total: number,
  ) {
    const failed = [...result.outcomes].filter(([, o]) => o !== "OK");
    expect(failed).toEqual([]);
    expect(result.outcomes.size).toBe(total);
    expect(Math.max(...result.latencies)).toBeLessThanOrEqual(TIMEOUT_MS + 100);
    const twice = [...effects].filter(([, n]) => n !== 1);
    expect(twice).toEqual([]);
    expect(effects.size).toBe(total);
  }

  it("serves core calls across nodes, from both responders", async () => {
    const { effects, servedBy } = await responders({});
    const result = await load({ total: 300, inFlight: 16 });
    expectOnce(result, effects, 300);
    expect(servedBy.every((n) => n > 0)).toBe(true);
  });

  it("completes durable calls on replica-3 streams with kvDedupe on a replica-3 bucket", async () => {
    const { effects } = await responders({ bucket: await sharedBucket(), durable: true });
    const result = await load({ total: 100, inFlight: 8, durable: true });
    expectOnce(result, effects, 100);
    const info = await jsm.streams.info(names.commands);
    expect(info.config.num_replicas).toBe(3);
    // A command is acked just after its reply is sent, and the ack reaches the replicas after that:
    // every command is acked (removed from the work queue) shortly after the last reply.
    await vi.waitFor(
      async () => expect((await jsm.streams.info(names.commands)).state.messages).toBe(0),
      { timeout: 5000, interval: 50 },
    );
  });

  it("a responder's node killed with SIGKILL during core load: every call completes, each effect once", async () => {
    const { effects } = await responders({ bucket: await sharedBucket() });
    const node2 = cluster.node("n2");
    const result = await load({
      total: 600,
      inFlight: 16,
      at: (settled) => (settled === 150 ? node2.kill("SIGKILL") : undefined),
    });
    expect(node2.running).toBe(false);
    expectOnce(result, effects, 600);
  });

  it("the stream leader killed with SIGKILL during durable load: every call completes, each effect once", async () => {
    const { effects } = await responders({ bucket: await sharedBucket(), durable: true });
    let killed: string | undefined;
    const result = await load({
      total: 200,
      inFlight: 8,
      durable: true,
      at: async (settled) => {
        if (settled !== 40) return;
        killed = await cluster.streamLeader(names.commands);
        if (killed !== undefined) await cluster.node(killed).kill("SIGKILL");
      },
    });
    expect(killed).toBeDefined();
    expectOnce(result, effects, 200);
    console.log(`stream leader ${killed} killed; latency max ${Math.max(...result.latencies)} ms`);
  });

  it("the caller's node killed with SIGKILL during durable load: results are asked for again, none lost", async () => {
    const { effects } = await responders({ bucket: await sharedBucket(), durable: true });
    const node1 = cluster.node("n1");
    const result = await load({
      total: 200,
      inFlight: 8,
      durable: true,
      at: (settled) => (settled === 40 ? node1.kill("SIGKILL") : undefined),
    });
    expect(node1.running).toBe(false);
    expectOnce(result, effects, 200);
    console.log(`caller's node killed; latency max ${Math.max(...result.latencies)} ms`);
  });
}, 120_000);
