/**
 * ricochet over core NATS (validation on both sides; the default memory dedupe, none, or kvDedupe),
 * or as durable calls over JetStream.
 */
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { connect } from "@nats-io/transport-node";
import {
  createClient,
  createResponder,
  type DedupeStore,
  type DurableQueue,
  defineContract,
  jetstreamQueue,
  kvDedupe,
  method,
  natsTransport,
} from "ricochet";
import type { PayloadSet } from "../payload.js";
import { createGate } from "./gate.js";
import type { ImplFactory } from "./types.js";

/** The bench contract for a payload set: one method, its request and response validated with zod. */
export const contractFor = (payload: PayloadSet) =>
  defineContract({
    service: "bench",
    version: "1.0.0",
    methods: {
      charge: method({ request: payload.requestSchema, response: payload.responseSchema }),
    },
  });

type DedupeChoice = "default" | "none" | "kv" | "durable";

function factory(choice: DedupeChoice): ImplFactory {
  return async (servers, payload) => {
    const contract = contractFor(payload);
    const [server, client] = await Promise.all([connect({ servers }), connect({ servers })]);
    let dedupe: DedupeStore | false | undefined;
    let cleanup = async () => {};
    if (choice === "none") dedupe = false;
    if (choice === "kv") {
      const bucket = `bench_dedupe_${process.pid}`;
      const kvm = new Kvm(server);
      const kv = await kvm.create(bucket, { ttl: 120_000, history: 1 });
      const store = kvDedupe(kv, { ttlMs: 120_000, leaseMs: 30_000 });
      dedupe = store;
      cleanup = async () => {
        store.close();
        await kv.destroy();
      };
    }
    let queue: DurableQueue | undefined;
    if (choice === "durable") {
      queue = jetstreamQueue(jetstream(server));
      const jsm = await jetstreamManager(server);
      cleanup = async () => {
        for (const name of ["RICOCHET_bench", "RICOCHET_bench_DEAD"])
          await jsm.streams.delete(name).catch(() => undefined);
      };
      await cleanup();
    }
    const gate = createGate();
    const responder = createResponder(
      contract,
      {
        charge: async (req) => {
          const held = gate.pass();
          if (held) await held;
          return payload.respond(req);
        },
      },
      {
        transport: natsTransport(server),
        concurrency: 20_000,
        maxQueue: 20_000,
        // Left out, the default applies: memoryDedupe() with its default bounds.
        ...(dedupe === undefined ? {} : { dedupe }),
        ...(queue === undefined ? {} : { durable: queue }),
      },
    );
    await responder.start();
    const rpc = createClient(contract, {
      transport: natsTransport(client),
      // Core calls on the default deadline (5 s), which memoryDedupe's retention follows; durable
      // calls may wait behind a long stream.
      ...(queue === undefined ? {} : { timeoutMs: 60_000 }),
      ...(queue === undefined
        ? {}
        : { durable: { queue: jetstreamQueue(jetstream(client)), methods: ["charge"] as const } }),
    });
    return {
      call: (req) => rpc.charge(req),
      ...gate.controls(),
      close: async () => {
        await rpc.close();
        await responder.stop();
        await cleanup();
        await Promise.all([client.close(), server.close()]);
      },
    };
  };
}

/** ricochet as configured by default: validation on both sides, memoryDedupe(). */
export const create = factory("default");
/** ricochet with `dedupe: false`: validation only. */
export const createWithoutDedupe = factory("none");
/** ricochet with `kvDedupe` on a JetStream KV bucket: a KV create and update per call. */
export const createWithKvDedupe = factory("kv");
/** ricochet durable calls: stored on a JetStream work queue, pulled by the responder, memoryDedupe. */
export const createDurable = factory("durable");
