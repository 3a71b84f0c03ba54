import { afterEach, describe, expect, it } from "vitest";
import { createClient } from "../../src/client.js";
import { memoryDedupe } from "../../src/dedupe/memory.js";
import type { StoredReply } from "../../src/dedupe/types.js";
import { encodeBody } from "../../src/protocol.js";
import { createResponder, type Handlers } from "../../src/responder.js";
import { type MemoryTransport, memoryTransport } from "../../src/transport/memory.js";
import { billing, deferred, rejection } from "../fixtures/billing.js";

const reply = (text: string): StoredReply => ({ data: new TextEncoder().encode(text) });

describe("memoryDedupe store", () => {
  it("gives one owner, then replays; a different fingerprint is a conflict", async () => {
    const store = memoryDedupe();
    const first = await store.claim("id", "m:1");
    expect(first.status).toBe("owner");
    expect((await store.claim("id", "m:1")).status).toBe("running");
    expect((await store.claim("id", "m:2")).status).toBe("conflict");
    if (first.status === "owner") await first.finish(reply("r"), true);
    const again = await store.claim("id", "m:1");
    expect(again.status === "done" && new TextDecoder().decode(again.reply.data)).toBe("r");
  });

  it("hands a running call's reply to waiters even when it is not kept, then forgets it", async () => {
    const store = memoryDedupe();
    const owner = await store.claim("id", "f");
    const waiter = await store.claim("id", "f");
    if (owner.status !== "owner" || waiter.status !== "running")
      throw new Error("unexpected claims");
    const waited = waiter.wait(new AbortController().signal);
    await owner.finish(reply("internal"), false);
    expect(new TextDecoder().decode((await waited)?.data)).toBe("internal");
    expect((await store.claim("id", "f")).status).toBe("owner");
  });

  it("stops waiting when the waiter's signal aborts", async () => {
    const store = memoryDedupe();
    await store.claim("id", "f");
    const waiter = await store.claim("id", "f");
    if (waiter.status !== "running") throw new Error("expected running");
    const controller = new AbortController();
    const waited = waiter.wait(controller.signal);
    controller.abort();
    expect(await waited).toBeUndefined();
  });

  it("forgets a finished call after ttlMs", async () => {
    let now = 1_000;
    const store = memoryDedupe({ ttlMs: 100, now: () => now });
    const c = await store.claim("id", "f");
    if (c.status === "owner") await c.finish(reply("r"), true);
    now += 99;
    expect((await store.claim("id", "f")).status).toBe("done");
    now += 2;
    expect((await store.claim("id", "f")).status).toBe("owner");
  });

  it("stays within maxEntries, evicting the least recently used finished call first", async () => {
    const store = memoryDedupe({ maxEntries: 10 });
    for (let i = 0; i < 1_000; i++) {
      const c = await store.claim(`id-${i}`, "f");
      if (c.status === "owner") await c.finish(reply(String(i)), true);
      if (i === 5) await store.claim("id-0", "f"); // touch id-0 so it is recent
      expect(store.size).toBeLessThanOrEqual(10);
    }
    expect((await store.claim("id-999", "f")).status).toBe("done");
    expect((await store.claim("id-1", "f")).status).toBe("owner");
  });

  it("keeps its use-order queue bounded when a few calls are replayed many times", async () => {
    const store = memoryDedupe({ maxEntries: 100 });
    for (let i = 0; i < 10; i++) {
      const c = await store.claim(`id-${i}`, "f");
      if (c.status === "owner") await c.finish(reply(String(i)), true);
    }
    for (let n = 0; n < 50_000; n++) await store.claim(`id-${n % 10}`, "f");
    expect(store.size).toBe(10);
    expect(store.queueLength).toBeLessThan(2 * 10 + 1024 + 1);
  });

  it("rejects bad options by name", () => {
    expect(() => memoryDedupe({ ttlMs: 0 })).toThrow(/ttlMs must be a number > 0/);
    expect(() => memoryDedupe({ maxEntries: 0.5 })).toThrow(/maxEntries must be an integer >= 1/);
  });
});

describe("deduplicating responder", () => {
  let t: MemoryTransport;
  const cleanup: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const c of cleanup.splice(0).reverse()) await c();
    await t.close();
  });
  async function setup(handlers: Partial<Handlers<typeof billing>>) {
    t = memoryTransport();
    const runs = { charge: 0, echo: 0 };
    const responder = createResponder(
      billing,
      {
        charge: (req, ctx) => {
          runs.charge++;
          return handlers.charge?.(req, ctx) ?? { chargeId: `ch_${runs.charge}`, balanceCents: 1 };
        },
        echo: (req, ctx) => {
          runs.echo++;
          return handlers.echo?.(req, ctx) ?? { text: `${req.text}#${runs.echo}` };
        },
        ping: () => "pong" as const,
      },
      { transport: t, dedupe: memoryDedupe() },
    );
    await responder.start();
    const client = createClient(billing, { transport: t, retry: { attempts: 1 } });
    cleanup.push(
      () => responder.stop(),
      () => client.close(),
    );
    return { client, runs };
  }

  it("runs the handler once for concurrent duplicates, which all get the first execution's reply", async () => {
    const gate = deferred();
    const { client, runs } = await setup({
      echo: async ({ text }) => {
        await gate.promise;
        return { text: `${text} once` };
      },
    });
    const calls = Array.from({ length: 5 }, () => client.echo({ text: "x" }, { id: "dup" }));
    await client.ping(undefined); // every duplicate has reached the responder before the gate opens
    gate.resolve();
    expect(await Promise.all(calls)).toEqual(Array(5).fill({ text: "x once" }));
    expect(runs.echo).toBe(1);
  });

  it("replays the stored reply to a later duplicate, contract errors included", async () => {
    const { client, runs } = await setup({
      charge: (_req, ctx) => {
        throw ctx.fail("INSUFFICIENT_FUNDS", { balanceCents: 3 });
      },
    });
    expect(await client.echo({ text: "a" }, { id: "e1" })).toEqual({ text: "a#1" });
    expect(await client.echo({ text: "a" }, { id: "e1" })).toEqual({ text: "a#1" });
    const first = await rejection(client.charge({ accountId: "a", amountCents: 1 }, { id: "c1" }));
    const second = await rejection(client.charge({ accountId: "a", amountCents: 1 }, { id: "c1" }));
    expect([first.code, second.code]).toEqual(["INSUFFICIENT_FUNDS", "INSUFFICIENT_FUNDS"]);
    expect(second.details).toEqual({ balanceCents: 3 });
    expect(runs).toEqual({ charge: 1, echo: 1 });
  });

  it("does not store INTERNAL failures, so a retry of the id runs the handler again", async () => {
    let fail = true;
    const { client, runs } = await setup({
      echo: ({ text }) => {
        if (fail) throw new Error("flaky database");
        return { text };
      },
    });
    expect((await rejection(client.echo({ text: "a" }, { id: "i1" }))).code).toBe("INTERNAL");
    fail = false;
    expect(await client.echo({ text: "a" }, { id: "i1" })).toEqual({ text: "a" });
    expect(runs.echo).toBe(2);
  });

  it("refuses the same id with another request or another method with ID_REUSED", async () => {
    const { client, runs } = await setup({});
    await client.echo({ text: "a" }, { id: "k" });
    const otherBody = await rejection(client.echo({ text: "b" }, { id: "k" }));
    expect(otherBody.code).toBe("ID_REUSED");
    expect(otherBody.message).toMatch(/call id k was already used.*use a new id/);
    expect(
      (await rejection(client.charge({ accountId: "a", amountCents: 1 }, { id: "k" }))).code,
    ).toBe("ID_REUSED");
    expect(runs).toEqual({ charge: 0, echo: 1 });
  });

  it("does not deduplicate plain requests that carry no call id", async () => {
    const { runs } = await setup({});
    for (let i = 0; i < 2; i++) {
      const got = deferred();
      const inbox = `raw.${i}`;
      t.subscribe(inbox, () => got.resolve());
      t.publish("billing.echo", encodeBody({ text: "a" }), { reply: inbox });
      await got.promise;
    }
    expect(runs.echo).toBe(2);
  });
});
