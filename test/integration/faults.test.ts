/**
 * Fault tests on a real nats-server. Each asserts what settled and how many times a handler ran.
 */
import { type NatsConnection, headers as natsHeaders } from "@nats-io/nats-core";
import { connect } from "@nats-io/transport-node";
import { afterEach, describe, expect, inject, it } from "vitest";
import { createClient } from "../../src/client.js";
import { memoryDedupe } from "../../src/dedupe/memory.js";
import type { DedupeStore } from "../../src/dedupe/types.js";
import { isRpcError, type RpcError } from "../../src/errors.js";
import { createResponder, type Handlers, type Responder } from "../../src/responder.js";
import { natsTransport } from "../../src/transport/nats.js";
import type { Transport } from "../../src/transport/types.js";
import { billing, billingHandlers, deferred, withoutProgress } from "../fixtures/billing.js";
import { startNatsServer } from "../support/nats-server.js";

async function outcome(
  p: Promise<unknown>,
): Promise<{ ok: true; value: unknown } | { ok: false; error: RpcError }> {
  try {
    return { ok: true, value: await p };
  } catch (err) {
    if (isRpcError(err)) return { ok: false, error: err };
    throw err;
  }
}

/** Wraps a transport so that the replies `drop` picks are lost on the way back. */
function lossy(t: Transport, drop: (n: number) => boolean): Transport {
  let replies = 0;
  return {
    ...t,
    get maxPayload() {
      return t.maxPayload;
    },
    publish(subject, data, opts) {
      if (subject.startsWith("_INBOX.") && drop(++replies)) return;
      t.publish(subject, data, opts);
    },
    subscribe: (s, f, o) => t.subscribe(s, f, o),
    flush: () => t.flush(),
    createInbox: () => t.createInbox(),
  };
}

describe("faults on a real nats-server", () => {
  const cleanup: Array<() => Promise<unknown>> = [];
  afterEach(async () => {
    for (const c of cleanup.splice(0).reverse()) await c();
  });
  async function conn(servers = inject("natsUrl"), opts = {}): Promise<NatsConnection> {
    const nc = await connect({ servers, ...opts });
    cleanup.push(() => nc.close());
    return nc;
  }
  async function responder(
    transport: Transport,
    handlers: Handlers<typeof billing>,
    dedupe?: DedupeStore,
  ) {
    const r = createResponder(billing, handlers, { transport, ...(dedupe ? { dedupe } : {}) });
    await r.start();
    cleanup.push(() => r.stop());
    return r;
  }

  it("a slow handler that outlasts an attempt finishes once, and the retry shares its reply", async () => {
    let runs = 0;
    const attempt2 = deferred();
    const store = memoryDedupe();
    await responder(
      natsTransport(await conn()),
      {
        ...billingHandlers,
        echo: async ({ text }, ctx) => {
          runs++;
          if (ctx.attempt === 1) await attempt2.promise;
          return { text };
        },
      },
      {
        // The store tells us when attempt 2 arrives and joins the running first execution.
        claim: async (id, fp) => {
          const claim = await store.claim(id, fp);
          if (claim.status === "running") attempt2.resolve();
          return claim;
        },
      },
    );
    // A caller that does not ask for progress messages retries the slow attempt.
    const client = createClient(billing, {
      transport: withoutProgress(natsTransport(await conn())),
      retry: { attempts: 3, baseMs: 1, maxMs: 1 },
    });
    cleanup.push(() => client.close());
    await expect(client.echo({ text: "slow" }, { timeoutMs: 600 })).resolves.toEqual({
      text: "slow",
    });
    expect(runs).toBe(1);
  });

  it("a handler slower than the whole deadline gives TIMEOUT, and ran once across all attempts", async () => {
    let runs = 0;
    const settled = deferred();
    await responder(
      natsTransport(await conn()),
      {
        ...billingHandlers,
        // Held until the caller has given up, so every retry finds the first execution still running.
        echo: async ({ text }) => {
          runs++;
          await settled.promise;
          return { text };
        },
      },
      memoryDedupe(),
    );
    const client = createClient(billing, {
      transport: natsTransport(await conn()),
      retry: { attempts: 3, baseMs: 1, maxMs: 1 },
    });
    cleanup.push(() => client.close());
    const r = await outcome(client.echo({ text: "x" }, { timeoutMs: 300 }));
    settled.resolve();
    expect(r.ok === false && r.error.code).toBe("TIMEOUT");
    expect(runs).toBe(1);
  });

  it("a lost reply is recovered by the retry, which replays the stored reply without running again", async () => {
    let runs = 0;
    const responderNc = await conn();
    await responder(
      lossy(natsTransport(responderNc), (n) => n === 1),
      {
        ...billingHandlers,
        charge: (req) => ({ chargeId: `ch_${++runs}`, balanceCents: 100 - req.amountCents }),
      },
      memoryDedupe(),
    );
    const client = createClient(billing, {
      transport: natsTransport(await conn()),
      retry: { attempts: 3, baseMs: 1, maxMs: 1 },
    });
    cleanup.push(() => client.close());
    const out = await client.charge(
      { accountId: "a", amountCents: 10 },
      { id: "lost-1", timeoutMs: 900 },
    );
    expect(out).toEqual({ chargeId: "ch_1", balanceCents: 90 });
    expect(runs).toBe(1);
  });

  it("a responder restarted between attempts replays from the shared store instead of running again", async () => {
    let runs = 0;
    const store = memoryDedupe();
    const handlers = {
      ...billingHandlers,
      charge: () => ({ chargeId: `ch_${++runs}`, balanceCents: 0 }),
    };
    const firstDone = deferred();
    // The first instance runs the handler, loses the reply, and is stopped; a new one takes the retry.
    const first: Responder = await responder(
      lossy(natsTransport(await conn()), () => {
        firstDone.resolve();
        return true;
      }),
      handlers,
      store,
    );
    const client = createClient(billing, {
      transport: natsTransport(await conn()),
      retry: { attempts: 4, baseMs: 1, maxMs: 5 },
    });
    cleanup.push(() => client.close());
    const call = client.charge(
      { accountId: "a", amountCents: 1 },
      { id: "restart-1", timeoutMs: 2_000 },
    );
    await firstDone.promise;
    await first.stop();
    await responder(natsTransport(await conn()), handlers, store);
    await expect(call).resolves.toEqual({ chargeId: "ch_1", balanceCents: 0 });
    expect(runs).toBe(1);
  });

  it("duplicate deliveries of one id, in parallel and one after another, run the handler once", async () => {
    let runs = 0;
    const gate = deferred();
    await responder(
      natsTransport(await conn()),
      {
        ...billingHandlers,
        charge: async (req) => {
          runs++;
          await gate.promise;
          return { chargeId: `ch_${runs}`, balanceCents: 100 - req.amountCents };
        },
      },
      memoryDedupe(),
    );
    const raw = await conn();
    const h = natsHeaders();
    h.set("Nats-Msg-Id", "dup-42");
    const body = new TextEncoder().encode(JSON.stringify({ accountId: "a", amountCents: 5 }));
    const parallel = Array.from({ length: 10 }, () =>
      raw.request("billing.charge", body, { timeout: 5_000, headers: h }),
    );
    await raw.flush();
    gate.resolve();
    const replies = (await Promise.all(parallel)).map((m) => m.string());
    const later = await raw.request("billing.charge", body, { timeout: 5_000, headers: h });
    expect(new Set([...replies, later.string()])).toEqual(
      new Set(['{"chargeId":"ch_1","balanceCents":95}']),
    );
    expect(runs).toBe(1);
  });

  it("a nats-server restart during a stream of calls: the client reconnects, every call settles by its deadline", async () => {
    const server = await startNatsServer();
    cleanup.unshift(() => server[Symbol.asyncDispose]()); // cleanup runs in reverse: the server goes last
    const reconnecting = { maxReconnectAttempts: -1, reconnectTimeWait: 50, reconnectJitter: 0 };
    const runsById = new Map<string, number>();
    await responder(
      natsTransport(await conn(server.url, reconnecting)),
      {
        ...billingHandlers,
        charge: (req, ctx) => {
          runsById.set(ctx.id, (runsById.get(ctx.id) ?? 0) + 1);
          return { chargeId: ctx.id, balanceCents: 100 - req.amountCents };
        },
      },
      memoryDedupe(),
    );
    const client = createClient(billing, {
      transport: natsTransport(await conn(server.url, reconnecting)),
      timeoutMs: 3_000,
      retry: { attempts: 5, baseMs: 20, maxMs: 200 },
    });
    cleanup.push(() => client.close());
    const total = 300;
    const late: number[] = [];
    let settled = 0;
    const halfway = deferred();
    const calls: Array<ReturnType<typeof outcome>> = [];
    for (let i = 0; i < total; i++) {
      const started = Date.now();
      calls.push(
        outcome(client.charge({ accountId: "a", amountCents: 1 }, { id: `s-${i}` })).finally(() => {
          if (Date.now() - started > 3_000 + 1_000) late.push(i); // timer slack on a loaded CI machine
          if (++settled === total / 3) halfway.resolve();
        }),
      );
      if (i === total / 2) {
        await halfway.promise;
        await server.restart();
      }
      if (i % 10 === 0) await new Promise((r) => setImmediate(r)); // let replies flow between bursts
    }
    const results = await Promise.all(calls);
    const failures = results.filter((r) => !r.ok).map((r) => (r.ok ? "" : r.error.code));
    expect(results).toHaveLength(total);
    expect(
      failures.every((code) => ["TIMEOUT", "NO_RESPONDERS", "UNAVAILABLE"].includes(code)),
    ).toBe(true);
    expect(results.filter((r) => r.ok).length).toBeGreaterThan(total / 2);
    // Calls made after the restart went through the reconnected client.
    expect(results.slice(total / 2 + 1).filter((r) => r.ok).length).toBeGreaterThan(0);
    console.info(
      `server restart: ${total - failures.length} ok, failures: ${JSON.stringify(failures)}`,
    );
    expect(late).toEqual([]);
    expect([...runsById.values()].every((n) => n === 1)).toBe(true);
  });

  it("a responder stopped mid-load loses no call while a second instance serves the queue group", async () => {
    const served = [0, 0];
    const mk = (i: number) => ({
      ...billingHandlers,
      echo: async ({ text }: { text: string }) => {
        served[i] = (served[i] ?? 0) + 1;
        await new Promise((r) => setImmediate(r));
        return { text };
      },
    });
    const a = await responder(natsTransport(await conn()), mk(0));
    await responder(natsTransport(await conn()), mk(1));
    const client = createClient(billing, {
      transport: natsTransport(await conn()),
      timeoutMs: 5_000,
    });
    cleanup.push(() => client.close());
    const total = 400;
    let done = 0;
    const quarter = deferred();
    const calls = Array.from({ length: total }, (_, i) =>
      client.echo({ text: String(i) }).finally(() => {
        if (++done === total / 4) quarter.resolve();
      }),
    );
    await quarter.promise;
    await a.stop();
    const results = await Promise.all(calls);
    expect(results.map((r) => r.text)).toEqual(Array.from({ length: total }, (_, i) => String(i)));
    expect((served[0] ?? 0) + (served[1] ?? 0)).toBeGreaterThanOrEqual(total);
    expect(served[0]).toBeGreaterThan(0);
    expect(served[1]).toBeGreaterThan(0);
  });
});
