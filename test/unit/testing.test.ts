/**
 * `ricochet/testing`: the fault-injecting transport and the helpers, used as a user would to test a
 * service against the failures ricochet promises to survive.
 */
import { describe, expect, it } from "vitest";
import { isRpcError } from "../../src/errors.js";
import type { Handlers } from "../../src/responder.js";
import { testContext, testPair } from "../../src/testing/index.js";
import { billing, billingHandlers } from "../fixtures/billing.js";

/** Billing handlers that count the charges they make. */
function counting() {
  const charged: string[] = [];
  const handlers: Handlers<typeof billing> = {
    ...billingHandlers,
    charge: (req, ctx) => {
      charged.push(ctx.id);
      if (req.amountCents > 100) throw ctx.fail("INSUFFICIENT_FUNDS", { balanceCents: 100 });
      return { chargeId: `ch_${ctx.id}`, balanceCents: 100 - req.amountCents };
    },
  };
  return { handlers, charged };
}

describe("ricochet/testing", () => {
  it("drops a reply: the client retries and the responder replays it, charging once", async () => {
    const { handlers, charged } = counting();
    await using pair = await testPair(billing, handlers, {
      client: { timeoutMs: 600, retry: { attempts: 3, baseMs: 1, maxMs: 5 } },
    });
    const lost = pair.responderBus.drop({ kind: "reply", subject: "_INBOX.>", times: 1 });
    await expect(
      pair.client.charge({ accountId: "a", amountCents: 5 }, { id: "c-1" }),
    ).resolves.toEqual({
      chargeId: "ch_c-1",
      balanceCents: 95,
    });
    expect(lost.hits).toBe(1);
    expect(charged).toEqual(["c-1"]);
  });

  it("picks a call's requests by its id (callId), compact or with headers", async () => {
    for (const wire of ["compact", "headers"] as const) {
      const { handlers, charged } = counting();
      await using pair = await testPair(billing, handlers, {
        client: { wire, timeoutMs: 600, retry: { attempts: 3, baseMs: 1, maxMs: 5 } },
      });
      const lost = pair.clientBus.drop({ when: (m) => m.callId === "pick-2", times: 1 });
      await pair.client.charge({ accountId: "a", amountCents: 1 }, { id: "pick-1" });
      await pair.client.charge({ accountId: "a", amountCents: 1 }, { id: "pick-2" }); // retried
      expect(lost.hits).toBe(1);
      expect(charged).toEqual(["pick-1", "pick-2"]);
    }
  });

  it("duplicates and delays requests: each id still runs once", async () => {
    const { handlers, charged } = counting();
    await using pair = await testPair(billing, handlers);
    pair.clientBus.duplicate({ subject: "billing.charge" }, 2);
    pair.clientBus.delay(20, { kind: "request" });
    await Promise.all(
      ["d-1", "d-2", "d-3"].map((id) =>
        pair.client.charge({ accountId: "a", amountCents: 1 }, { id }),
      ),
    );
    expect(charged.sort()).toEqual(["d-1", "d-2", "d-3"]);
  });

  it("reorders replies within a window: each call still gets its own", async () => {
    await using pair = await testPair(billing, billingHandlers);
    const held = pair.responderBus.reorder(30, { kind: "reply" });
    const texts = ["one", "two", "three"];
    const outs = await Promise.all(texts.map((text) => pair.client.echo({ text })));
    expect(outs.map((o) => o.text)).toEqual(texts);
    expect(held.hits).toBe(3);
  });

  it("cuts a responder off: calls time out; healed, it serves again", async () => {
    await using pair = await testPair(billing, billingHandlers, {
      client: { timeoutMs: 150, retry: { attempts: 2, baseMs: 1, maxMs: 5 } },
    });
    pair.responderBus.cut();
    const err = await pair.client.echo({ text: "x" }).catch((e: unknown) => e);
    expect(isRpcError(err) && err.code).toBe("TIMEOUT");
    pair.responderBus.heal();
    await expect(pair.client.echo({ text: "back" })).resolves.toEqual({ text: "back" });
  });

  it("awaits a call reaching a handler, by an event", async () => {
    let release!: () => void;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    await using pair = await testPair(billing, {
      ...billingHandlers,
      echo: async ({ text }) => {
        await gate;
        return { text };
      },
    });
    const reached = pair.calls.next("echo");
    const call = pair.client.echo({ text: "held" }, { id: "e-1" });
    const ctx = await reached;
    expect(ctx.id).toBe("e-1");
    expect(pair.responder.inFlight).toBe(1);
    release();
    await expect(call).resolves.toEqual({ text: "held" });
  });

  it("unit-tests a handler with a context and no bus: fail, deadline and signal", async () => {
    const { handlers } = counting();
    const ctx = testContext(billing, "charge", { id: "u-1", timeoutMs: 30 });
    await expect(
      Promise.resolve(handlers.charge({ accountId: "a", amountCents: 5, note: "" }, ctx)),
    ).resolves.toEqual({
      chargeId: "ch_u-1",
      balanceCents: 95,
    });
    const err = await Promise.resolve()
      .then(() => handlers.charge({ accountId: "a", amountCents: 500, note: "" }, ctx))
      .catch((e: unknown) => e);
    expect(isRpcError(err) && err.code).toBe("INSUFFICIENT_FUNDS");
    expect(isRpcError(err) && err.details).toEqual({ balanceCents: 100 });
    expect(ctx.retryLater("soon").code).toBe("UNAVAILABLE");
    const aborted = await new Promise((resolve) =>
      ctx.signal.addEventListener("abort", () => resolve(ctx.signal.reason)),
    );
    expect(aborted).toMatchObject({ code: "TIMEOUT" });
  });
});
