import { afterEach, describe, expect, it } from "vitest";
import { createClient } from "../../src/client.js";
import { createMetrics } from "../../src/metrics.js";
import type { ClientMiddleware, ResponderMiddleware } from "../../src/middleware.js";
import { createResponder } from "../../src/responder.js";
import { type MemoryTransport, memoryTransport } from "../../src/transport/memory.js";
import type { TransportMessage } from "../../src/transport/types.js";
import { billing, billingHandlers, rejection } from "../fixtures/billing.js";

describe("middleware", () => {
  let t: MemoryTransport;
  const cleanup: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const c of cleanup.splice(0).reverse()) await c();
    await t.close();
  });

  async function setup(client: ClientMiddleware[], responder: ResponderMiddleware[]) {
    t = memoryTransport();
    const seenHeaders: Array<Record<string, string>> = [];
    const r = createResponder(
      billing,
      {
        ...billingHandlers,
        echo: ({ text }, ctx) => {
          seenHeaders.push({ ...ctx.headers });
          return { text };
        },
      },
      { transport: t, use: responder },
    );
    await r.start();
    const c = createClient(billing, { transport: t, use: client, retry: { attempts: 1 } });
    cleanup.push(
      () => r.stop(),
      () => c.close(),
    );
    return { c, seenHeaders };
  }

  it("runs client middleware outermost first, lets it add headers and see the outcome", async () => {
    const order: string[] = [];
    const outcomes: string[] = [];
    const outer: ClientMiddleware = async (call, next) => {
      order.push(`outer:${call.method}:${call.id}`);
      call.headers["X-Tenant"] = "t1";
      try {
        const v = await next();
        outcomes.push("ok");
        return v;
      } catch (err) {
        outcomes.push((err as { code: string }).code);
        throw err;
      }
    };
    const inner: ClientMiddleware = (call, next) => {
      order.push(`inner:${call.subject}`);
      return next();
    };
    const { c, seenHeaders } = await setup([outer, inner], []);
    await expect(c.echo({ text: "hi" }, { id: "m-1" })).resolves.toEqual({ text: "hi" });
    expect(order).toEqual(["outer:echo:m-1", "inner:billing.echo"]);
    expect(seenHeaders[0]).toMatchObject({ "X-Tenant": "t1", "Nats-Msg-Id": "m-1" });
    expect((await rejection(c.charge({ accountId: "a", amountCents: 500 }))).code).toBe(
      "INSUFFICIENT_FUNDS",
    );
    expect(outcomes).toEqual(["ok", "INSUFFICIENT_FUNDS"]);
  });

  it("lets client middleware refuse a call before anything is sent", async () => {
    const sent: TransportMessage[] = [];
    const refuse: ClientMiddleware = () => Promise.reject(new Error("not logged in"));
    const { c } = await setup([refuse], []);
    t.subscribe("billing.>", (m) => sent.push(m));
    await expect(c.echo({ text: "x" })).rejects.toThrow("not logged in");
    await t.flush();
    expect(sent).toHaveLength(0);
  });

  it("runs responder middleware around the handler with ctx and the parsed request", async () => {
    const seen: unknown[] = [];
    const audit: ResponderMiddleware = async (ctx, request, next) => {
      seen.push([ctx.method, request]);
      const value = await next();
      seen.push(["after", value]);
      return value;
    };
    const { c } = await setup([], [audit]);
    await c.charge({ accountId: "a", amountCents: 5 });
    expect(seen).toEqual([
      ["charge", { accountId: "a", amountCents: 5, note: "none" }],
      ["after", { chargeId: expect.stringMatching(/^ch_/), balanceCents: 95 }],
    ]);
  });

  it("lets responder middleware refuse a call with a contract error, and hides other failures", async () => {
    const guard: ResponderMiddleware = (ctx, request, next) => {
      if ((request as { amountCents?: number }).amountCents === 13) {
        throw ctx.fail("INSUFFICIENT_FUNDS", {
          balanceCents: 0,
        });
      }
      if ((request as { amountCents?: number }).amountCents === 66)
        throw new Error("middleware bug with secrets");
      return next();
    };
    const { c } = await setup([], [guard]);
    const refused = await rejection(c.charge({ accountId: "a", amountCents: 13 }));
    expect(refused).toMatchObject({ code: "INSUFFICIENT_FUNDS", details: { balanceCents: 0 } });
    const hidden = await rejection(c.charge({ accountId: "a", amountCents: 66 }));
    expect(hidden.code).toBe("INTERNAL");
    expect(hidden.message).not.toContain("secrets");
  });

  it("does not run responder middleware for requests that fail validation", async () => {
    let runs = 0;
    const count: ResponderMiddleware = (_ctx, _request, next) => {
      runs++;
      return next();
    };
    const { c } = await setup([], [count]);
    const got = new Promise<void>((resolve) => t.subscribe("raw.reply", () => resolve()));
    t.publish("billing.echo", new TextEncoder().encode("{bad"), { reply: "raw.reply" });
    await got;
    await c.echo({ text: "ok" });
    expect(runs).toBe(1);
  });

  it("turns a middleware's synchronous throw into a rejection the outer middleware sees", async () => {
    const metrics = createMetrics();
    const guard: ResponderMiddleware = (ctx) => {
      throw ctx.fail("INSUFFICIENT_FUNDS", { balanceCents: 0 });
    };
    const refuseNow: ClientMiddleware = () => {
      throw new Error("refused synchronously");
    };
    const { c } = await setup([], [...metrics.responder.use, guard]);
    expect((await rejection(c.charge({ accountId: "a", amountCents: 1 }))).code).toBe(
      "INSUFFICIENT_FUNDS",
    );
    expect(metrics.snapshot().responder["billing.charge"]).toMatchObject({
      inFlight: 0,
      outcomes: { INSUFFICIENT_FUNDS: 1 },
    });
    const client = createClient(billing, { transport: t, use: [refuseNow] });
    cleanup.push(() => client.close());
    let returned: Promise<unknown> | undefined;
    expect(() => {
      returned = client.echo({ text: "x" });
    }).not.toThrow();
    await expect(returned).rejects.toThrow("refused synchronously");
  });

  it("shows middleware the outcome the caller gets, not the handler's raw one", async () => {
    const metrics = createMetrics();
    t = memoryTransport();
    const r = createResponder(
      billing,
      { ...billingHandlers, echo: () => ({ text: 42 }) as unknown as { text: string } },
      { transport: t, ...metrics.responder },
    );
    await r.start();
    const c = createClient(billing, { transport: t, retry: { attempts: 1 } });
    cleanup.push(
      () => r.stop(),
      () => c.close(),
    );
    expect((await rejection(c.echo({ text: "x" }))).code).toBe("INTERNAL");
    expect(metrics.snapshot().responder["billing.echo"]?.outcomes).toEqual({ INTERNAL: 1 });
  });

  it("rejects a middleware that calls next() twice", async () => {
    const twice: ClientMiddleware = async (_call, next) => {
      await next();
      return next();
    };
    const { c } = await setup([twice], []);
    await expect(c.echo({ text: "x" })).rejects.toThrow(/next\(\) more than once/);
  });
});
