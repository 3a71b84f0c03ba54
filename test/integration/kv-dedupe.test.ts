/**
 * Cross-instance deduplication on a JetStream KV bucket: two responders with their own stores on one
 * bucket run a call id's handler once between them; a claim whose owner died is taken over.
 */

import { type KV, Kvm } from "@nats-io/kv";
import { type NatsConnection, headers as natsHeaders } from "@nats-io/nats-core";
import { connect } from "@nats-io/transport-node";
import { afterEach, beforeEach, describe, expect, inject, it } from "vitest";
import { createClient } from "../../src/client.js";
import { kvDedupe, kvKey } from "../../src/dedupe/kv.js";
import { createResponder, type Handlers, type Responder } from "../../src/responder.js";
import { natsTransport } from "../../src/transport/nats.js";
import { billing, billingHandlers, deferred, rejection } from "../fixtures/billing.js";
import { startChild } from "../support/child-process.js";
import { startNatsServer } from "../support/nats-server.js";

describe("kvDedupe on a real nats-server", () => {
  let ncs: NatsConnection[] = [];
  let kv: KV;
  let bucket: string;
  const stops: Array<() => Promise<void>> = [];

  beforeEach(async () => {
    const servers = inject("natsUrl");
    ncs = await Promise.all([connect({ servers }), connect({ servers }), connect({ servers })]);
    bucket = `ricochet_dedupe_${Date.now().toString(36)}_${Math.random().toString(36).slice(2, 8)}`;
    kv = await new Kvm(ncs[0] as NatsConnection).create(bucket, { ttl: 60_000, history: 1 });
  });
  afterEach(async () => {
    for (const stop of stops.splice(0).reverse()) await stop();
    await kv.destroy();
    await Promise.all(ncs.map((nc) => nc.close()));
  });

  async function instance(
    i: number,
    handlers: Handlers<typeof billing>,
    queue: string,
    leaseMs = 5_000,
  ): Promise<Responder> {
    const nc = ncs[i] as NatsConnection;
    const store = kvDedupe(await new Kvm(nc).open(bucket), { ttlMs: 60_000, leaseMs });
    const r = createResponder(billing, handlers, {
      transport: natsTransport(nc),
      queue,
      dedupe: store,
    });
    await r.start();
    stops.push(async () => {
      await r.stop();
      store.close();
    });
    return r;
  }

  it("runs the handler once when two instances both receive the same call id", async () => {
    let runs = 0;
    const gate = deferred();
    const started = deferred();
    const handlers = {
      ...billingHandlers,
      charge: async (req: { amountCents: number }) => {
        runs++;
        started.resolve();
        await gate.promise;
        return { chargeId: `ch_${runs}`, balanceCents: 100 - req.amountCents };
      },
    };
    // Different queue groups: every request reaches both instances, as a redelivery or retry might.
    await instance(0, handlers, "a");
    await instance(1, handlers, "b");
    const raw = ncs[2] as NatsConnection;
    const inbox = `_INBOX.kvtest.${Date.now()}`;
    const replies: string[] = [];
    const both = deferred();
    raw.subscribe(inbox, {
      callback: (_err, m) => {
        replies.push(m.string());
        if (replies.length === 2) both.resolve();
      },
    });
    const h = natsHeaders();
    h.set("Nats-Msg-Id", "shared-1");
    raw.publish("billing.charge", JSON.stringify({ accountId: "a", amountCents: 5 }), {
      reply: inbox,
      headers: h,
    });
    await raw.flush();
    // Let both instances claim before the owner finishes.
    await expect
      .poll(async () => (await kv.get(kvKey("shared-1")))?.operation, { timeout: 5_000 })
      .toBe("PUT");
    gate.resolve();
    await both.promise;
    expect(replies).toEqual([
      '{"chargeId":"ch_1","balanceCents":95}',
      '{"chargeId":"ch_1","balanceCents":95}',
    ]);
    expect(runs).toBe(1);
  });

  it("replays from the bucket on another instance after the first one stopped, and refuses a reused id", async () => {
    let runs = 0;
    const handlers = {
      ...billingHandlers,
      charge: () => ({ chargeId: `ch_${++runs}`, balanceCents: 0 }),
    };
    const a = await instance(0, handlers, "billing");
    const client = createClient(billing, {
      transport: natsTransport(ncs[2] as NatsConnection),
      retry: { attempts: 1 },
    });
    stops.push(() => client.close());
    await expect(
      client.charge({ accountId: "a", amountCents: 1 }, { id: "seq-1" }),
    ).resolves.toEqual({ chargeId: "ch_1", balanceCents: 0 });
    await a.stop();
    await instance(1, handlers, "billing");
    await expect(
      client.charge({ accountId: "a", amountCents: 1 }, { id: "seq-1" }),
    ).resolves.toEqual({ chargeId: "ch_1", balanceCents: 0 });
    expect(
      (await rejection(client.charge({ accountId: "a", amountCents: 2 }, { id: "seq-1" }))).code,
    ).toBe("ID_REUSED");
    expect(runs).toBe(1);
  });

  it("takes over a claim whose owner stopped renewing it, once its lease lapses", async () => {
    const dead = kvDedupe(kv, { ttlMs: 60_000, leaseMs: 300 });
    const first = await dead.claim("orphan-1", "charge:x");
    expect(first.status).toBe("owner");
    dead.close(); // the owner "dies": its lease is no longer renewed, and it never finishes
    const live = kvDedupe(await new Kvm(ncs[1] as NatsConnection).open(bucket), {
      ttlMs: 60_000,
      leaseMs: 300,
    });
    stops.push(async () => live.close());
    const claimedAt = Date.now();
    // Running until the lease lapses, and then for a renewal interval this instance watches it sit.
    let third = await live.claim("orphan-1", "charge:x");
    let waits = 0;
    while (third.status === "running") {
      expect(await third.wait(AbortSignal.timeout(5_000))).toBeUndefined();
      waits++;
      third = await live.claim("orphan-1", "charge:x");
    }
    expect(third.status).toBe("owner");
    expect(waits).toBeLessThanOrEqual(6);
    expect(Date.now() - claimedAt).toBeGreaterThanOrEqual(300 / 3); // never before it was seen lapsed
    if (third.status === "owner")
      await third.finish({ data: new TextEncoder().encode('"done"') }, true);
    const replay = await live.claim("orphan-1", "charge:x");
    expect(replay.status === "done" && new TextDecoder().decode(replay.reply.data)).toBe('"done"');
  });

  it("a responder SIGKILLed mid-handler: the retry completes on another instance, and the effect happens once", async () => {
    const servers = inject("natsUrl");
    const observer = ncs[2] as NatsConnection;
    const effects: string[] = [];
    const started = deferred<string>();
    const effected = deferred();
    observer.subscribe("effects.started.kill-1", {
      callback: (_e, m) => started.resolve(m.string()),
    });
    observer.subscribe("effects.done.kill-1", {
      callback: (_e, m) => {
        effects.push(m.string());
        effected.resolve();
      },
    });
    await observer.flush();

    const child = await startChild("test/support/responder-process.ts", [servers, bucket, "500"]);
    stops.push(() => child.kill());

    const client = createClient(billing, {
      transport: natsTransport(observer),
      timeoutMs: 10_000,
      retry: { attempts: 4, baseMs: 10, maxMs: 50 },
    });
    stops.push(() => client.close());
    const call = client.charge({ accountId: "a", amountCents: 5 }, { id: "kill-1" });
    const victim = await started.promise; // the child runs the handler (and holds the claim)
    await child.kill();

    await instance(
      1,
      {
        ...billingHandlers,
        charge: (req, ctx) => {
          (ncs[1] as NatsConnection).publish(`effects.done.${ctx.id}`, "survivor");
          return { chargeId: "ch_survivor", balanceCents: 100 - req.amountCents };
        },
      },
      "billing",
      500,
    );

    await expect(call).resolves.toEqual({ chargeId: "ch_survivor", balanceCents: 95 });
    await effected.promise;
    await observer.flush();
    expect(victim).toBe(String(child.pid));
    expect(effects).toEqual(["survivor"]);
  });

  it("an owner whose writes landed but whose answers were lost (a leader change) keeps its claim and records its reply", async () => {
    // The bucket applies every first write, then loses its answer, as when its leader dies just after.
    const lost = new Set<string>();
    const flaky = new Proxy(kv, {
      get(target, prop, receiver) {
        const value = Reflect.get(target, prop, receiver);
        if (prop !== "create" && prop !== "update") return value;
        return async (...args: unknown[]) => {
          const result = await (value as (...a: unknown[]) => Promise<number>).apply(target, args);
          const what = `${String(prop)}:${new TextDecoder().decode(args[1] as Uint8Array).slice(0, 12)}`;
          if (lost.has(what)) return result;
          lost.add(what);
          throw new Error(`timeout (${what} applied, answer lost)`);
        };
      },
    }) as KV;
    const store = kvDedupe(flaky, { ttlMs: 60_000, leaseMs: 90 });
    stops.push(async () => store.close());
    const claim = await store.claim("lost-1", "charge:x", Date.now() + 5_000);
    expect(claim.status).toBe("owner"); // its own create, found by its token
    if (claim.status !== "owner") return;
    // Renewals (every 30 ms) go on past a lost answer: the lease never lapses while the owner lives.
    const other = kvDedupe(await new Kvm(ncs[1] as NatsConnection).open(bucket), { leaseMs: 90 });
    stops.push(async () => other.close());
    const watcher = await other.claim("lost-1", "charge:x");
    expect(watcher.status).toBe("running");
    await new Promise((resolve) => setTimeout(resolve, 400)); // > 4 leases: a lapse would show
    expect((await other.claim("lost-1", "charge:x")).status).toBe("running");
    await claim.finish({ data: new TextEncoder().encode('"once"') }, true);
    const replay = await other.claim("lost-1", "charge:x");
    expect(replay.status === "done" && new TextDecoder().decode(replay.reply.data)).toBe('"once"');
    expect([...lost].some((w) => w.startsWith('update:{"s":"done"'))).toBe(true);
  });

  it("an owner keeps trying to record its reply while the server is down, and records it once it is back", async () => {
    await using server = await startNatsServer();
    const nc = await connect({
      servers: server.url,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 100,
    });
    stops.push(() => nc.close());
    const own = await new Kvm(nc).create(`${bucket}_restart`, { history: 1 });
    const store = kvDedupe(own, { ttlMs: 60_000, leaseMs: 30_000 });
    stops.push(async () => store.close());
    const claim = await store.claim("restart-1", "charge:x", Date.now() + 10_000);
    if (claim.status !== "owner") throw new Error(`expected owner, got ${claim.status}`);
    await server.stop();
    let recorded = false;
    const finishing = Promise.resolve(
      claim.finish({ data: new TextEncoder().encode('"kept"') }, true),
    ).then(() => {
      recorded = true;
    });
    // Its first writes fail while the server is down; it is still trying, not given up.
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(recorded).toBe(false);
    await server.restart();
    await finishing;
    const replay = await store.claim("restart-1", "charge:x");
    expect(replay.status === "done" && new TextDecoder().decode(replay.reply.data)).toBe('"kept"');
  });

  it("chains the claims of one id within an instance, so two deliveries never race their takeovers", async () => {
    // A clustered nats-server before 2.9.21 can accept two concurrent compare-and-sets with the same
    // expected revision (nats-server#4320): one instance must never have two in flight for one key.
    let inFlight = 0;
    let most = 0;
    const counting = new Proxy(kv, {
      get(target, prop, receiver) {
        const value = Reflect.get(target, prop, receiver);
        if (prop !== "create" && prop !== "update" && prop !== "get") return value;
        return async (...args: unknown[]) => {
          most = Math.max(most, ++inFlight);
          try {
            return await (value as (...a: unknown[]) => Promise<unknown>).apply(target, args);
          } finally {
            inFlight--;
          }
        };
      },
    }) as KV;
    // A failed call's record: claimable at once by whoever comes.
    const failed = { s: "failed", f: "charge:x", data: "" };
    await kv.put(kvKey("race-1"), new TextEncoder().encode(JSON.stringify(failed)));
    const store = kvDedupe(counting, { leaseMs: 10_000 });
    stops.push(async () => store.close());
    const claims = await Promise.all([
      store.claim("race-1", "charge:x"),
      store.claim("race-1", "charge:x"),
    ]);
    expect(claims.map((c) => c.status).sort()).toEqual(["owner", "running"]);
    expect(most).toBe(1);
  });

  it("does not take over a lapsed claim until the bucket has worked for a renewal interval since it last failed", async () => {
    // An owner cannot renew while the bucket is down, so a lease that lapsed then says nothing.
    let failNext = 0;
    const flaky = new Proxy(kv, {
      get(target, prop, receiver) {
        const value = Reflect.get(target, prop, receiver);
        if (prop !== "get") return value;
        return async (...args: unknown[]) => {
          if (failNext > 0) {
            failNext--;
            throw new Error("timeout (the bucket has no leader)");
          }
          return await (value as (...a: unknown[]) => Promise<unknown>).apply(target, args);
        };
      },
    }) as KV;
    const owner = kvDedupe(kv, { leaseMs: 300 });
    await owner.claim("outage-1", "charge:x");
    owner.close(); // no renewals: the lease lapses in 300 ms, as if the bucket were down for it
    const taker = kvDedupe(flaky, { leaseMs: 300 });
    stops.push(async () => taker.close());
    const first = await taker.claim("outage-1", "charge:x");
    if (first.status !== "running") throw new Error(`expected running, got ${first.status}`);
    expect(await first.wait(AbortSignal.timeout(5_000))).toBeUndefined(); // the lease lapsed
    failNext = 2; // the get inside kv.create, and the claim's own
    await expect(taker.claim("outage-1", "charge:x")).rejects.toThrow(/no leader/);
    const failedAt = Date.now();
    // Lapsed, but the bucket just failed here: the owner may be alive and unable to write. Wait.
    let claim = await taker.claim("outage-1", "charge:x");
    expect(claim.status).toBe("running");
    while (claim.status === "running") {
      expect(await claim.wait(AbortSignal.timeout(5_000))).toBeUndefined();
      claim = await taker.claim("outage-1", "charge:x");
    }
    expect(claim.status).toBe("owner");
    // Not before a renewal interval (300 / 3 ms) of a working bucket after the failure.
    expect(Date.now() - failedAt).toBeGreaterThanOrEqual(100);
  });

  it("keys any call id safely", () => {
    expect(kvKey("order-42")).toBe("k_order-42");
    expect(kvKey("has space/and.dots")).toMatch(/^e_[-_A-Za-z0-9]+$/);
  });
});
