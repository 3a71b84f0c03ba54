import fc from "fast-check";
import { afterEach, describe, expect, it } from "vitest";
import { createClient } from "../../src/client.js";
import { memoryDedupe } from "../../src/dedupe/memory.js";
import type { StoredReply } from "../../src/dedupe/types.js";
import { encodeBody } from "../../src/protocol.js";
import { createResponder, type Handlers } from "../../src/responder.js";
import { type MemoryTransport, memoryTransport } from "../../src/transport/memory.js";
import { billing, deferred, rejection } from "../fixtures/billing.js";

const reply = (text: string): StoredReply => ({ data: new TextEncoder().encode(text) });

/** Handlers for {@link billing} whose echo calls `ran` each time it runs. */
function billingHandlersFor(ran: () => void): Handlers<typeof billing> {
  return {
    charge: () => ({ chargeId: "c", balanceCents: 1 }),
    echo: ({ text }) => {
      ran();
      return { text };
    },
    ping: () => "pong" as const,
  };
}

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

  it("gives a late waiter the reply at once when the call finished between its claim and its wait", async () => {
    const store = memoryDedupe();
    const owner = store.claim("id", "f");
    const waiter = store.claim("id", "f");
    if (owner.status !== "owner" || waiter.status !== "running")
      throw new Error("unexpected claims");
    await owner.finish(reply("first"), true);
    const waited = await waiter.wait(new AbortController().signal);
    expect(new TextDecoder().decode(waited?.data)).toBe("first");
  });

  it("keeps a reply until its caller's deadline plus the margin, then for ttlMs, then forgets it", async () => {
    let now = 1_000;
    const store = memoryDedupe({ ttlMs: 100, marginMs: 50, now: () => now });
    const c = store.claim("id", "f", now + 5_000);
    if (c.status === "owner") await c.finish(reply("r"), true);
    now += 5_049; // past the deadline, inside the margin
    expect(store.claim("id", "f").status).toBe("done");
    now += 2;
    expect(store.claim("id", "f").status).toBe("owner");

    const d = store.claim("short", "f", now);
    if (d.status === "owner") await d.finish(reply("r"), true);
    now += 99; // the caller's deadline passed at once; ttlMs still replays it
    expect(store.claim("short", "f").status).toBe("done");
    now += 2;
    expect(store.claim("short", "f").status).toBe("owner");
  });

  it("replays a reply inside its deadline after 200,000 other calls, within its byte budget", async () => {
    let now = 1_000;
    const store = memoryDedupe({ maxBytes: 1 << 20, ttlMs: 0, marginMs: 0, now: () => now });
    const first = store.claim("first", "f", now + 30_000);
    if (first.status === "owner") await first.finish(reply("first"), true);
    for (let i = 0; i < 200_000; i++) {
      now += 0.1; // 10,000 calls a second, each with a 100 ms deadline
      const c = store.claim(`id-${i}`, "f", now + 100);
      if (c.status !== "owner") throw new Error(`call ${i}: ${c.status}`);
      await c.finish(reply(`r${i}`), true);
      expect(store.bytes).toBeLessThanOrEqual(store.maxBytes);
    }
    const again = store.claim("first", "f");
    expect(again.status === "done" && new TextDecoder().decode(again.reply.data)).toBe("first");
    const recent = store.claim("id-199999", "f");
    expect(recent.status === "done" && new TextDecoder().decode(recent.reply.data)).toBe("r199999");
  });

  it("drops the replies of calls inside their deadlines before it refuses, never forgetting a call", async () => {
    let now = 1_000;
    const store = memoryDedupe({ maxBytes: 65_536, ttlMs: 0, marginMs: 0, now: () => now });
    const body = "x".repeat(300);
    let admitted = 0;
    const admit = async () => {
      const c = store.claim(`id-${admitted}`, "f", now + 60_000);
      if (c.status === "owner") {
        await c.finish(reply(body), true);
        admitted++;
      }
      return c;
    };
    // 400 calls of 300 bytes do not fit in 64 KiB: the oldest replies are dropped, the newest kept.
    while (admitted < 400) expect((await admit()).status).toBe("owner");
    expect(store.claim("id-0", "f").status).toBe("dropped");
    const newest = store.claim("id-399", "f");
    expect(newest.status === "done" && new TextDecoder().decode(newest.reply.data)).toBe(body);
    let refused: { status: "full"; retryAfterMs: number } | undefined;
    while (refused === undefined && admitted < 20_000) {
      const c = await admit();
      if (c.status === "full") refused = c;
      expect(store.bytes).toBeLessThanOrEqual(65_536);
    }
    // Then calls until even their records fill the budget: refused, and nothing forgotten.
    expect(admitted).toBeGreaterThan(500); // 64 KiB holds about 180 such replies
    expect(refused?.retryAfterMs).toBeGreaterThan(59_000);
    const statuses = new Set<string>();
    for (let i = 0; i < admitted; i++) statuses.add(store.claim(`id-${i}`, "f").status);
    expect([...statuses]).toEqual(["dropped"]); // every call remembered, every reply given up
    // Room comes back when the oldest calls' deadlines pass, as the refusal said.
    now += (refused?.retryAfterMs ?? 0) + 1;
    expect(store.claim("later", "f", now + 1000).status).toBe("owner");
  });

  it("never forgets a reply inside its deadline, whatever the order of claims, finishes and time (property)", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.record({
            id: fc.integer({ min: 0, max: 80 }),
            budget: fc.integer({ min: 0, max: 20_000 }),
            size: fc.integer({ min: 0, max: 2_000 }),
            keep: fc.boolean(),
            advance: fc.integer({ min: 0, max: 100 }),
          }),
          { minLength: 200, maxLength: 600 },
        ),
        async (steps) => {
          let now = 0;
          const store = memoryDedupe({ maxBytes: 65_536, ttlMs: 500, marginMs: 0, now: () => now });
          const kept = new Map<string, { until: number; text: string }>();
          for (const [n, step] of steps.entries()) {
            now += step.advance;
            // ASCII, one-byte non-ASCII and UTF-16 ids are stored differently.
            const id = `${["id", "ïd", "🆔"][step.id % 3]}-${step.id}`;
            const c = store.claim(id, "f", now + step.budget);
            const known = kept.get(id);
            if (known !== undefined && known.until >= now) {
              // Remembered: replayed, or (to stay within the budget) its reply dropped; never run again.
              expect(["done", "dropped"]).toContain(c.status);
              if (c.status === "done")
                expect(new TextDecoder().decode(c.reply.data)).toBe(known.text);
              continue;
            }
            if (c.status !== "owner") continue;
            const text = `${n}:${"y".repeat(step.size)}`;
            await c.finish(reply(text), step.keep);
            if (step.keep) kept.set(id, { until: now + step.budget, text });
            else kept.delete(id);
            expect(store.bytes).toBeLessThanOrEqual(65_536 + 2_100);
          }
        },
      ),
      { numRuns: 200 },
    );
  });

  it("keeps a call for the latest deadline of its callers: a later caller's, and a joiner's", async () => {
    let now = 1_000;
    const store = memoryDedupe({ marginMs: 0, now: () => now });
    const first = store.claim("replayed", "f", now + 1_000);
    if (first.status === "owner") first.finish(reply("r"), true);
    expect(store.claim("replayed", "f", now + 10_000).status).toBe("done"); // a second caller, 10 s
    const owner = store.claim("joined", "f", now + 1_000);
    expect(store.claim("joined", "f", now + 10_000).status).toBe("running"); // joins, 10 s
    if (owner.status === "owner") owner.finish(reply("j"), true);
    now += 5_000; // past the first callers' deadlines, inside the later ones'
    expect(store.claim("replayed", "f").status).toBe("done");
    expect(store.claim("joined", "f").status).toBe("done");
  });

  it("honours a caller's deadline for at most maxRetentionMs, so far deadlines cannot hold the budget", async () => {
    let now = 1_000;
    const store = memoryDedupe({ maxRetentionMs: 60_000, marginMs: 0, now: () => now });
    const huge = 2 ** 31 - 1;
    for (let i = 0; i < 2_000; i++) {
      const c = store.claim(`far-${i}`, "f", now + huge);
      if (c.status !== "owner") throw new Error(`call ${i}: ${c.status}`);
      c.finish(reply("x".repeat(16)), true);
    }
    expect(store.bytes).toBeLessThan(1 << 20); // sparse far-off calls hold little memory
    now += 59_000;
    expect(store.claim("far-0", "f").status).toBe("done");
    now += 60_000;
    expect(store.claim("far-0", "f").status).toBe("owner");
  });

  it("holds little memory for calls with scattered deadlines", async () => {
    let now = 1_000;
    const store = memoryDedupe({ marginMs: 0, now: () => now });
    // 1,000 calls a second for 30 s, 5 s deadlines, and every 250th with a 60 s one.
    for (let i = 0; i < 30_000; i++) {
      now += 1;
      const c = store.claim(`id-${i}`, "f", now + (i % 250 === 0 ? 60_000 : 5_000));
      if (c.status !== "owner") throw new Error(`call ${i}: ${c.status}`);
      c.finish(reply("y".repeat(100)), true);
    }
    // About 5,000 calls inside their deadlines, at about 200 bytes each with their index entries.
    expect(store.bytes).toBeLessThan(8 * 2 ** 20);
    expect(store.claim("id-29000", "f").status).toBe("done");
    expect(store.claim("id-0", "f").status).toBe("done"); // a 60 s call, 30 s later
  });

  it("keeps admitting calls after a reply larger than the budget, which it keeps as dropped", async () => {
    let now = 1_000;
    const store = memoryDedupe({ maxBytes: 65_536, marginMs: 0, now: () => now });
    const big = store.claim("big", "f", now + 5_000);
    if (big.status !== "owner") throw new Error("expected owner");
    await big.finish({ data: new Uint8Array(8 * 2 ** 20) }, true);
    expect(store.claim("big", "f").status).toBe("dropped"); // remembered, not replayable
    for (let i = 0; i < 100; i++) {
      now += 1;
      const c = store.claim(`small-${i}`, "f", now + 5_000);
      expect(c.status).toBe("owner");
      if (c.status === "owner") await c.finish(reply("s"), true);
    }
  });

  it("rejects bad options by name", () => {
    expect(() => memoryDedupe({ ttlMs: -1 })).toThrow(/ttlMs must be a number >= 0/);
    expect(() => memoryDedupe({ maxBytes: 1000 })).toThrow(/maxBytes must be an integer >= 65536/);
    expect(() => memoryDedupe({ marginMs: Number.NaN })).toThrow(/marginMs must be a number >= 0/);
    expect(() => memoryDedupe({ maxRetentionMs: -1 })).toThrow(
      /maxRetentionMs must be a number >= 0/,
    );
    expect(() => memoryDedupe({ maxEntries: 10 } as never)).toThrow(
      /maxEntries was replaced by maxBytes/,
    );
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

  it("without a store (dedupe: false), a retry after a lost reply runs the handler again", async () => {
    t = memoryTransport();
    let runs = 0;
    let dropped = false;
    // The responder's first reply is lost on the way back.
    const lossy = {
      ...t,
      publish: (
        subject: string,
        data: Uint8Array,
        opts?: { reply?: string; headers?: Record<string, string> },
      ) => {
        if (subject.startsWith("_INBOX.") && !dropped) {
          dropped = true;
          return;
        }
        t.publish(subject, data, opts);
      },
    };
    const responder = createResponder(
      billing,
      {
        ...billingHandlersFor(() => runs++),
      },
      { transport: lossy, dedupe: false },
    );
    await responder.start();
    const client = createClient(billing, {
      transport: t,
      retry: { attempts: 2, baseMs: 1, maxMs: 1 },
    });
    cleanup.push(
      () => responder.stop(),
      () => client.close(),
    );
    expect(await client.echo({ text: "a" }, { timeoutMs: 400, id: "lost" })).toEqual({ text: "a" });
    expect(runs).toBe(2);
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
