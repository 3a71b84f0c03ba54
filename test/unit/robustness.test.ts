/**
 * The edges: races between a call and its caller, schemas and stores that throw, budgets out of range,
 * shutdown with work queued. Each case once let a call hang, settle wrongly or lose a reply.
 */
import { getEventListeners } from "node:events";
import { pino } from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { z } from "zod";
import { createClient } from "../../src/client.js";
import { defineContract, method } from "../../src/contract.js";
import { memoryDedupe } from "../../src/dedupe/memory.js";
import type { DedupeStore } from "../../src/dedupe/types.js";
import type { RpcError } from "../../src/errors.js";
import { type CallToken, encodeBody, parseCallToken } from "../../src/protocol.js";
import { createResponder, type Handlers, type ResponderOptions } from "../../src/responder.js";
import { type MemoryTransport, memoryTransport } from "../../src/transport/memory.js";
import type { TransportMessage } from "../../src/transport/types.js";
import {
  billing,
  billingHandlers,
  deferred,
  gatedEcho,
  rejection,
  withoutProgress,
} from "../fixtures/billing.js";

describe("robustness", () => {
  let t: MemoryTransport;
  const cleanup: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const c of cleanup.splice(0).reverse()) await c();
    await t.close();
  });
  const serve = async <C extends typeof billing>(
    handlers: Handlers<C>,
    opts: Partial<ResponderOptions> = {},
    contract = billing,
  ) => {
    const r = createResponder(contract, handlers as Handlers<typeof billing>, {
      transport: t,
      ...opts,
    });
    await r.start();
    cleanup.push(() => r.stop());
    return r;
  };
  const client = (opts = {}) => {
    const c = createClient(billing, { transport: t, ...opts });
    cleanup.push(() => c.close());
    return c;
  };
  const countRequests = (subject: string) => {
    const seen: TransportMessage[] = [];
    t.subscribe(subject, (m) => seen.push(m));
    return seen;
  };

  // A contract whose request schema validates asynchronously, so a call spends a moment validating.
  const slow = defineContract({
    service: "billing",
    version: "1.0.0",
    methods: {
      echo: method({
        request: z.object({ text: z.string() }).refine(async () => true),
        response: z.object({ text: z.string() }),
      }),
    },
  });

  it("cancels a call aborted while its request is validated, and sends nothing", async () => {
    t = memoryTransport();
    await serve(billingHandlers);
    const seen = countRequests("billing.echo");
    const c = createClient(slow, { transport: t });
    cleanup.push(() => c.close());
    const controller = new AbortController();
    const call = rejection(c.echo({ text: "x" }, { signal: controller.signal }));
    controller.abort();
    expect((await call).code).toBe("CANCELLED");
    await t.flush();
    expect(seen).toHaveLength(0);
  });

  it("cancels a call aborted right after it was sent", async () => {
    t = memoryTransport();
    await serve(billingHandlers);
    const controller = new AbortController();
    const call = rejection(client().echo({ text: "x" }, { signal: controller.signal }));
    controller.abort();
    expect((await call).code).toBe("CANCELLED");
  });

  it("cancels a call when the client closes while its request is being validated, and sends nothing", async () => {
    t = memoryTransport();
    await serve(billingHandlers);
    const seen = countRequests("billing.echo");
    const c = createClient(slow, { transport: t });
    const call = rejection(c.echo({ text: "x" }));
    await c.close();
    expect((await call).code).toBe("CANCELLED");
    await t.flush();
    expect(seen).toHaveLength(0);
  });

  it("keeps waiting for an unanswered attempt when the last attempt is refused, and takes its late reply", async () => {
    t = memoryTransport();
    const gate = deferred();
    const refused = deferred();
    await serve(
      {
        ...billingHandlers,
        echo: async ({ text }) => {
          await gate.promise;
          return { text: `done: ${text}` };
        },
      },
      {
        concurrency: 1,
        maxQueue: 0,
        dedupe: false,
        logger: pino(
          { level: "warn" },
          { write: (line: string) => line.includes("overloaded") && refused.resolve() },
        ),
      },
    );
    // Attempt 1 runs (and stays busy); attempt 2 is refused with OVERLOADED. The call must not give up:
    // attempt 1 finishes within the deadline and its reply completes the call.
    // A caller that does not ask for progress messages, so the slow attempt 1 is retried.
    const call = client({
      transport: withoutProgress(t),
      retry: { attempts: 2, baseMs: 1, maxMs: 1 },
    }).echo({ text: "slow" }, { timeoutMs: 2_000 });
    await refused.promise;
    gate.resolve();
    await expect(call).resolves.toEqual({ text: "done: slow" });
  });

  it("turns a request schema that throws into INVALID_REQUEST on the client, and a reply schema that throws into INVALID_RESPONSE", async () => {
    t = memoryTransport();
    const boom = z.object({ text: z.string() }).refine(() => {
      throw new Error("refine exploded");
    });
    const fragile = defineContract({
      service: "billing",
      version: "1.0.0",
      methods: { echo: method({ request: boom, response: z.object({ text: z.string() }) }) },
    });
    const c = createClient(fragile, { transport: t });
    cleanup.push(() => c.close());
    const err = await rejection(c.echo({ text: "x" }));
    expect(err.code).toBe("INVALID_REQUEST");
    expect(err.message).toMatch(/the schema threw: refine exploded/);

    const badReply = defineContract({
      service: "billing",
      version: "1.0.0",
      methods: { echo: method({ request: z.object({ text: z.string() }), response: boom }) },
    });
    t.subscribe("billing.echo", (m) => m.reply && t.publish(m.reply, encodeBody({ text: "y" })));
    const c2 = createClient(badReply, { transport: t, retry: { attempts: 1 } });
    cleanup.push(() => c2.close());
    expect((await rejection(c2.echo({ text: "x" }))).code).toBe("INVALID_RESPONSE");
  });

  it("rejects a request that cannot be encoded as JSON with INVALID_REQUEST, nothing sent", async () => {
    t = memoryTransport();
    const big = defineContract({
      service: "billing",
      version: "1.0.0",
      methods: { echo: method({ request: z.object({ n: z.bigint() }), response: z.object({}) }) },
    });
    const c = createClient(big, { transport: t });
    cleanup.push(() => c.close());
    const err = await rejection(c.echo({ n: 1n }));
    expect(err.code).toBe("INVALID_REQUEST");
    expect(err.message).toMatch(/cannot be encoded as JSON/);
  });

  it("answers INTERNAL, and frees the dedupe claim, when the responder's schema throws", async () => {
    t = memoryTransport();
    const store = memoryDedupe();
    let runs = 0;
    const throwing = defineContract({
      service: "billing",
      version: "1.0.0",
      methods: {
        echo: method({
          request: z.object({ text: z.string() }),
          response: z.object({ text: z.string() }).refine(() => {
            throw new Error("response refine exploded");
          }),
        }),
      },
    });
    const r = createResponder(
      throwing,
      {
        echo: ({ text }) => {
          runs++;
          return { text };
        },
      },
      { transport: t, dedupe: store },
    );
    await r.start();
    cleanup.push(() => r.stop());
    const c = createClient(billing, { transport: t, retry: { attempts: 1 } });
    cleanup.push(() => c.close());
    expect((await rejection(c.echo({ text: "x" }, { id: "t1" }))).code).toBe("INTERNAL");
    expect((await rejection(c.echo({ text: "x" }, { id: "t1" }))).code).toBe("INTERNAL");
    expect(runs).toBe(2); // INTERNAL is not stored, and the claim did not stay "running"
    expect(store.size).toBe(0);
  });

  it("answers INTERNAL and frees the claim when contract error details cannot be encoded", async () => {
    t = memoryTransport();
    const store = memoryDedupe();
    let runs = 0;
    const withBigint = defineContract({
      service: "billing",
      version: "1.0.0",
      methods: {
        echo: method({
          request: z.object({ text: z.string() }),
          response: z.object({ text: z.string() }),
          errors: { TOO_BIG: z.object({ n: z.bigint() }) },
        }),
      },
    });
    const r = createResponder(
      withBigint,
      {
        echo: (_req, ctx) => {
          runs++;
          throw ctx.fail("TOO_BIG", { n: 1n });
        },
      },
      { transport: t, dedupe: store },
    );
    await r.start();
    cleanup.push(() => r.stop());
    const c = createClient(billing, { transport: t, retry: { attempts: 1 } });
    cleanup.push(() => c.close());
    expect((await rejection(c.echo({ text: "x" }, { id: "b1" }))).code).toBe("INTERNAL");
    expect((await rejection(c.echo({ text: "x" }, { id: "b1" }))).code).toBe("INTERNAL");
    expect(runs).toBe(2);
    expect(store.size).toBe(0);
  });

  it("refuses call headers that would corrupt the wire, on every transport", async () => {
    t = memoryTransport();
    await expect(client().echo({ text: "x" }, { headers: { "X Tenant": "a" } })).rejects.toThrow(
      TypeError,
    );
    await expect(
      client().echo({ text: "x" }, { headers: { "X-Tenant": "a\r\nInjected: 1" } }),
    ).rejects.toThrow(/invalid header/);
    expect(() => t.publish("a.b", new Uint8Array(), { headers: { "Bad Key": "x" } })).toThrow(
      /invalid header/,
    );
  });

  it("keeps one abort listener per signal however many calls share it", async () => {
    t = memoryTransport();
    const gate = deferred();
    await serve({
      ...billingHandlers,
      echo: async ({ text }) => {
        await gate.promise;
        return { text };
      },
    });
    const c = client();
    const shared = new AbortController();
    const calls = Array.from({ length: 20 }, (_, i) =>
      c.echo({ text: String(i) }, { signal: shared.signal }),
    );
    expect(getEventListeners(shared.signal, "abort")).toHaveLength(1);
    gate.resolve();
    await Promise.all(calls);
    expect(getEventListeners(shared.signal, "abort")).toHaveLength(0);
  });

  it("never runs a call without deduplication: a store that cannot claim refuses it with UNAVAILABLE; one that cannot record still answers", async () => {
    t = memoryTransport();
    let runs = 0;
    let claims = 0;
    const failing = (where: "claim" | "finish"): DedupeStore => ({
      async claim(id, fp) {
        claims++;
        if (where === "claim") throw new Error("store down");
        const claim = await memoryDedupe().claim(id, fp);
        if (claim.status !== "owner") return claim;
        return {
          status: "owner",
          finish: async () => {
            throw new Error("store down");
          },
        };
      },
    });
    const outcomes: unknown[] = [];
    for (const where of ["claim", "finish"] as const) {
      const r = createResponder(
        billing,
        {
          ...billingHandlers,
          echo: ({ text }) => {
            runs++;
            return { text };
          },
        },
        {
          transport: t,
          dedupe: failing(where),
          queue: where,
        },
      );
      await r.start();
      const c = createClient(billing, { transport: t, retry: { attempts: 1 } });
      outcomes.push(
        await c.echo({ text: where }, { timeoutMs: 300 }).catch((e: RpcError) => e.code),
      );
      await c.close();
      await r.stop();
    }
    // The claim was retried until the deadline, then the call refused unrun; the finish failure is
    // only logged: the handler ran and its caller got the reply.
    expect(outcomes).toEqual(["UNAVAILABLE", { text: "finish" }]);
    expect(claims).toBeGreaterThan(2);
    expect(runs).toBe(1);
  });

  it("clamps a budget header beyond the timer range instead of aborting at once", async () => {
    t = memoryTransport();
    const seen = deferred<{ left: number; aborted: boolean }>();
    await serve({
      ...billingHandlers,
      echo: ({ text }, ctx) => {
        seen.resolve({ left: ctx.deadline - Date.now(), aborted: ctx.signal.aborted });
        return { text };
      },
    });
    const got = deferred();
    t.subscribe("raw.r", () => got.resolve());
    t.publish("billing.echo", encodeBody({ text: "x" }), {
      reply: "raw.r",
      headers: { "Ricochet-Timeout": "99999999999" },
    });
    await got.promise;
    const { left, aborted } = await seen.promise;
    expect(aborted).toBe(false);
    expect(left).toBeGreaterThan(24 * 24 * 3600 * 1000);
    expect(left).toBeLessThanOrEqual(2 ** 31 - 1);
  });

  it("sends whole milliseconds, and refuses deadlines outside (0, 2^31-1] by name", async () => {
    t = memoryTransport();
    const seen = countRequests("billing.echo");
    await serve(billingHandlers);
    await client().echo({ text: "x" }, { timeoutMs: 1500.7 });
    // A compact call: its budget is a field of the call token, digits only.
    const token = parseCallToken(seen[0]?.reply ?? "");
    expect(token).toMatchObject({ budgetMs: expect.any(Number) });
    expect(Number.isInteger((token as CallToken).budgetMs)).toBe(true);
    const headers = countRequests("billing.echo");
    await client({ wire: "headers" }).echo({ text: "x" }, { timeoutMs: 1500.7 });
    expect(headers[0]?.header("Ricochet-Timeout")).toMatch(/^\d+$/);
    expect(() => createClient(billing, { transport: t, timeoutMs: 2 ** 31 })).toThrow(
      /timeoutMs must be a number of milliseconds/,
    );
    await expect(client().echo({ text: "x" }, { timeoutMs: 0 })).rejects.toThrow(
      /call option timeoutMs/,
    );
  });

  it("refuses extra headers that would overwrite ricochet's own", async () => {
    t = memoryTransport();
    await expect(
      client().echo({ text: "x" }, { headers: { "nats-msg-id": "mine" } }),
    ).rejects.toThrow(/may not set 'nats-msg-id'.*use the id option/);
  });

  it("stop() finishes queued calls as well as running ones", async () => {
    t = memoryTransport();
    const held = gatedEcho();
    const responder = await serve({ ...billingHandlers, echo: held.echo }, { concurrency: 1 });
    const c = client();
    const calls = ["1", "2", "3"].map((text) => c.echo({ text }));
    await held.started;
    await t.flush(); // the other two calls have arrived and wait in the queue
    const stopping = responder.stop();
    held.open();
    await stopping;
    expect((await Promise.all(calls)).map((r) => r.text)).toEqual(["1", "2", "3"]);
  });
});
