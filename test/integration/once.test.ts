/**
 * "Runs once" under load, on a real nats-server: memoryDedupe keeps a reply until its caller's
 * deadline whatever the traffic, and refuses rather than forgets when its byte budget is full;
 * progress messages keep a slow call on the instance that holds it, and stop when that instance dies.
 * Each test asserts what settled and how many times a handler ran.
 */

import { setTimeout as sleep } from "node:timers/promises";
import { type KV, Kvm } from "@nats-io/kv";
import {
  createInbox,
  type Msg,
  type NatsConnection,
  headers as natsHeaders,
} from "@nats-io/nats-core";
import { connect } from "@nats-io/transport-node";
import { pino } from "pino";
import { afterEach, describe, expect, inject, it } from "vitest";
import type { RetryInfo } from "../../src/call.js";
import { createClient } from "../../src/client.js";
import { kvDedupe } from "../../src/dedupe/kv.js";
import { memoryDedupe } from "../../src/dedupe/memory.js";
import type { DedupeStore } from "../../src/dedupe/types.js";
import { isRpcError, type RpcError } from "../../src/errors.js";
import { createMetrics } from "../../src/metrics.js";
import { HEADER_PROGRESS } from "../../src/protocol.js";
import { createResponder, type Handlers, type Responder } from "../../src/responder.js";
import { natsTransport } from "../../src/transport/nats.js";
import type { Transport, TransportMessage } from "../../src/transport/types.js";
import { billing, billingHandlers, captureLogs, deferred, rejection } from "../fixtures/billing.js";
import { startChild } from "../support/child-process.js";
import { type RawReply, sendAll } from "../support/raw-requests.js";

type Outcome = { ok: true; value: unknown } | { ok: false; error: RpcError };

async function outcome(p: Promise<unknown>): Promise<Outcome> {
  try {
    return { ok: true, value: await p };
  } catch (err) {
    if (isRpcError(err)) return { ok: false, error: err };
    throw err;
  }
}

/** Resolves with `p`, or rejects naming `what` if it takes longer than `ms`. */
async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no ${what} within ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** `t`, with every message its subscriptions deliver also shown to `see` (what a client receives). */
function tapped(t: Transport, see: (msg: TransportMessage) => void): Transport {
  return {
    get maxPayload() {
      return t.maxPayload;
    },
    publish: (subject, data, opts) => t.publish(subject, data, opts),
    subscribe: (subject, onMessage, opts) =>
      t.subscribe(
        subject,
        (msg) => {
          see(msg);
          onMessage(msg);
        },
        opts,
      ),
    flush: () => t.flush(),
    createInbox: () => t.createInbox(),
  };
}

const isProgress = (msg: TransportMessage) =>
  msg.data.length === 0 && msg.header(HEADER_PROGRESS) !== undefined;

const encoder = new TextEncoder();
const chargeBody = encoder.encode(JSON.stringify({ accountId: "a", amountCents: 1 }));

describe("runs once under load, on a real nats-server", () => {
  const cleanup: Array<() => Promise<unknown>> = [];
  afterEach(async () => {
    for (const c of cleanup.splice(0).reverse()) await c();
  });
  async function conn(): Promise<NatsConnection> {
    const nc = await connect({ servers: inject("natsUrl") });
    cleanup.push(() => nc.close());
    return nc;
  }
  async function responder(
    handlers: Handlers<typeof billing>,
    options: { dedupe?: DedupeStore; nc?: NatsConnection } & Omit<
      Parameters<typeof createResponder>[2],
      "transport" | "dedupe"
    > = {},
  ): Promise<Responder> {
    const { nc, ...rest } = options;
    const r = createResponder(billing, handlers, {
      transport: natsTransport(nc ?? (await conn())),
      ...rest,
    });
    await r.start();
    cleanup.push(() => r.stop());
    return r;
  }

  it("a retry sent after 30,000 other calls, inside its deadline, replays instead of re-running", async () => {
    const runs = new Map<string, number>();
    let total = 0;
    await responder({
      ...billingHandlers,
      charge: (req, ctx) => {
        runs.set(ctx.id, (runs.get(ctx.id) ?? 0) + 1);
        return { chargeId: `ch_${++total}`, balanceCents: 100 - req.amountCents };
      },
    });
    const client = createClient(billing, { transport: natsTransport(await conn()) });
    cleanup.push(() => client.close());
    const request = { accountId: "acct-x", amountCents: 7 };
    const first = await client.charge(request, { id: "x-1", timeoutMs: 30_000 });
    expect(first).toEqual({ chargeId: "ch_1", balanceCents: 93 });

    // 30,000 other calls, as fast as the responder takes them (below its queue bound, so none is
    // refused), each with an id of its own and a 30 s deadline.
    const others = 30_000;
    const requests = Array.from({ length: others }, (_, i) => ({
      body: chargeBody,
      headers: { "Nats-Msg-Id": `other-${i}`, "Ricochet-Timeout": "30000" },
    }));
    const t0 = performance.now();
    const replies = await sendAll(await conn(), "billing.charge", requests, {
      window: 512,
      timeoutMs: 15_000,
    });
    const floodMs = performance.now() - t0;
    console.info(`30,000 calls in ${Math.round(floodMs)} ms`);
    expect(replies.filter((r) => r.code !== undefined)).toEqual([]);
    expect(runs.size).toBe(others + 1);
    expect(total).toBe(others + 1);

    // The same call again, well inside its 30 s deadline: the stored reply, not a second run.
    await expect(client.charge(request, { id: "x-1", timeoutMs: 30_000 })).resolves.toEqual(first);
    expect(runs.get("x-1")).toBe(1);
    expect(total).toBe(others + 1);
  }, 30_000);

  for (const instances of [2, 3]) {
    it(`with ${instances} instances in a queue group, handlers slower than an attempt window run once per id and every call resolves`, async () => {
      const runs = new Map<string, number>();
      const servedBy = new Map<string, number>();
      for (let i = 0; i < instances; i++) {
        await responder({
          ...billingHandlers,
          // Slower than the client's first attempt window (5000 / 3 ≈ 1667 ms): the slowness under test.
          charge: async (req, ctx) => {
            runs.set(ctx.id, (runs.get(ctx.id) ?? 0) + 1);
            servedBy.set(ctx.id, i);
            await sleep(2_500);
            return { chargeId: `ch_${ctx.id}_${i}`, balanceCents: 100 - req.amountCents };
          },
        });
      }
      const retries: RetryInfo[] = [];
      const client = createClient(billing, {
        transport: natsTransport(await conn()),
        onRetry: (info) => retries.push(info),
      });
      cleanup.push(() => client.close());
      const ids = Array.from({ length: 8 }, (_, i) => `slow-${instances}-${i}`);
      const t0 = performance.now();
      const results = await Promise.all(
        ids.map((id) => outcome(client.charge({ accountId: "a", amountCents: 1 }, { id }))),
      );
      const elapsed = performance.now() - t0;
      expect(results).toEqual(
        ids.map((id) => ({
          ok: true,
          value: { chargeId: `ch_${id}_${servedBy.get(id)}`, balanceCents: 99 },
        })),
      );
      expect(Object.fromEntries(runs)).toEqual(Object.fromEntries(ids.map((id) => [id, 1])));
      expect(retries).toEqual([]); // progress messages kept every attempt alive past its window
      expect(elapsed).toBeGreaterThan(2_400);
      console.info(
        `${instances} instances: served by ${JSON.stringify([...servedBy.values()])} in ${Math.round(elapsed)} ms`,
      );
    });
  }

  for (const store of ["memory", "kv"] as const) {
    it(`an instance killed with SIGKILL while it holds an extended call: the client retries elsewhere and the call completes (${store === "memory" ? "memoryDedupe" : "kvDedupe"})`, async () => {
      const servers = inject("natsUrl");
      const observer = await conn();
      const id = `extended-${store}`;
      let bucket = "";
      let kv: KV | undefined;
      if (store === "kv") {
        bucket = `ricochet_once_${Date.now().toString(36)}_${Math.random().toString(36).slice(2, 8)}`;
        const created = await new Kvm(observer).create(bucket, { ttl: 60_000, history: 1 });
        kv = created;
        cleanup.push(() => created.destroy());
      }
      const started: string[] = [];
      const childStarted = deferred<string>();
      const effects: string[] = [];
      const effected = deferred();
      observer.subscribe(`effects.started.${id}`, {
        callback: (_e, m) => {
          started.push(m.string());
          childStarted.resolve(m.string());
        },
      });
      observer.subscribe(`effects.done.${id}`, {
        callback: (_e, m) => {
          effects.push(m.string());
          effected.resolve();
        },
      });
      await observer.flush();

      const child = await startChild(
        "test/support/slow-responder-process.ts",
        store === "kv" ? [servers, bucket, "1000"] : [servers, "memory"],
      );
      cleanup.push(() => child.kill());

      // What the client receives: the progress messages, by the instance that sent them.
      const progress: string[] = [];
      const thirdProgress = deferred();
      const retries: RetryInfo[] = [];
      const client = createClient(billing, {
        transport: tapped(natsTransport(await conn()), (msg) => {
          if (!isProgress(msg)) return;
          progress.push(msg.header(HEADER_PROGRESS) as string);
          if (progress.length === 3) thirdProgress.resolve();
        }),
        timeoutMs: 9_000, // default attempts (3): the first attempt's window is 3000 ms
        onRetry: (info) => retries.push(info),
      });
      cleanup.push(() => client.close());
      const attemptWindow = 3_000;
      const sent = Date.now();
      let settled = false;
      const call = outcome(client.charge({ accountId: "a", amountCents: 5 }, { id })).finally(
        () => {
          settled = true;
        },
      );
      const [pid, instance] = (
        await within(childStarted.promise, 5_000, "start in the child")
      ).split(" ");
      expect(pid).toBe(String(child.pid));

      // Progress every 1500 ms: the third comes 1.5 windows after the call was sent, so by then the
      // attempt has outlived its window without a retry. It was extended.
      await within(thirdProgress.promise, 8_000, "third progress message");
      expect(Date.now() - sent).toBeGreaterThan(attemptWindow);
      expect(settled).toBe(false);
      expect(retries).toEqual([]);
      expect(new Set(progress)).toEqual(new Set([instance]));

      // A second instance joins the queue group; the one holding the call dies.
      let survivorRuns = 0;
      const survivorNc = await conn();
      const kvStore =
        kv === undefined
          ? undefined
          : kvDedupe(await new Kvm(survivorNc).open(bucket), { ttlMs: 60_000, leaseMs: 1_000 });
      if (kvStore !== undefined) cleanup.push(async () => kvStore.close());
      await responder(
        {
          ...billingHandlers,
          charge: (req, ctx) => {
            survivorRuns++;
            survivorNc.publish(`effects.done.${ctx.id}`, "survivor");
            return { chargeId: "ch_survivor", balanceCents: 100 - req.amountCents };
          },
        },
        { nc: survivorNc, ...(kvStore ? { dedupe: kvStore } : {}) },
      );
      const killedAt = Date.now();
      await child.kill();

      // No more progress: the attempt times out and the retry completes on the survivor.
      const result = await call;
      console.info(
        `${store}: resolved ${Date.now() - killedAt} ms after the kill, ${Date.now() - sent} ms after the call; retries ${JSON.stringify(retries.map((r) => [r.attempt, r.code]))}`,
      );
      expect(result).toEqual({ ok: true, value: { chargeId: "ch_survivor", balanceCents: 95 } });
      expect(retries.length).toBeGreaterThanOrEqual(1);
      expect(retries[0]?.code).toBe("TIMEOUT");
      expect(survivorRuns).toBe(1);
      await within(effected.promise, 1_000, "effect");
      await observer.flush();
      expect(started).toEqual([`${child.pid} ${instance}`]); // the child started it once, never finished
      expect(effects).toEqual(["survivor"]); // the effect happened once, on the survivor
    });
  }

  it("a plain nats.js request() to a slow handler gets exactly one message, the reply", async () => {
    const runs = new Map<string, number>();
    const r = await responder({
      ...billingHandlers,
      echo: async ({ text }) => {
        runs.set(text, (runs.get(text) ?? 0) + 1);
        await sleep(2_100); // slower than 2 s: the slowness under test
        return { text };
      },
    });
    const raw = await conn();

    /** Sends a request with `headers` to a fresh inbox and collects every message until the reply. */
    const collect = async (text: string, headers: Record<string, string>): Promise<Msg[]> => {
      const inbox = createInbox();
      const got: Msg[] = [];
      const replied = deferred();
      raw.subscribe(inbox, {
        callback: (_e, m) => {
          got.push(m);
          if (m.data.length > 0) replied.resolve();
        },
      });
      const h = natsHeaders();
      for (const [k, v] of Object.entries(headers)) h.set(k, v);
      raw.publish("billing.echo", JSON.stringify({ text }), {
        reply: inbox,
        ...(Object.keys(headers).length > 0 ? { headers: h } : {}),
      });
      await within(replied.promise, 5_000, `reply to ${text}`);
      await raw.flush(); // anything sent before the reply has been delivered by now
      return got;
    };
    const [plain, withId, withProgress, requested] = await Promise.all([
      collect("plain", {}),
      collect("with-id", { "Nats-Msg-Id": "plain-id-1" }),
      collect("with-progress", { "Nats-Msg-Id": "progress-id-1", [HEADER_PROGRESS]: "400" }),
      raw.request("billing.echo", JSON.stringify({ text: "request" }), { timeout: 5_000 }),
    ]);

    for (const [got, text] of [
      [plain, "plain"],
      [withId, "with-id"],
    ] as const) {
      expect(got.map((m) => m.string())).toEqual([JSON.stringify({ text })]);
      expect(got[0]?.headers?.get(HEADER_PROGRESS) ?? "").toBe("");
    }
    expect(requested.string()).toBe(JSON.stringify({ text: "request" }));

    // Positive control: a caller that asks for progress (window 400 ms) gets one every 200 ms.
    const reply = withProgress.at(-1);
    const before = withProgress.slice(0, -1);
    expect(reply?.string()).toBe(JSON.stringify({ text: "with-progress" }));
    expect(before.length).toBeGreaterThanOrEqual(1);
    for (const m of before) {
      expect(m.data.length).toBe(0);
      expect(m.headers?.get(HEADER_PROGRESS)).toBe(r.id);
    }
    expect(Object.fromEntries(runs)).toEqual({
      plain: 1,
      "with-id": 1,
      "with-progress": 1,
      request: 1,
    });
  });

  it("the store stays under its byte budget under a flood of distinct ids: it drops the oldest replies, then refuses with OVERLOADED, never running a call twice", async () => {
    const store = memoryDedupe({ maxBytes: 65_536 });
    const metrics = createMetrics();
    const logs = captureLogs();
    let runs = 0;
    await responder(
      {
        ...billingHandlers,
        charge: (req, ctx) => {
          runs++;
          return { chargeId: `ch_${ctx.id}`, balanceCents: 100 - req.amountCents };
        },
      },
      { dedupe: store, logger: pino({ level: "warn" }, logs.stream), ...metrics.responder },
    );
    const raw = await conn();
    const batch = 64;
    const maxBatches = 40;
    const sent: Array<{ id: string; reply: RawReply }> = [];
    const samples: number[] = [];
    let fullBatches = 0;
    const t0 = Date.now();
    for (let b = 0; b < maxBatches && fullBatches < 2; b++) {
      const ids = Array.from({ length: batch }, (_, i) => `flood-${b * batch + i}`);
      const replies = await sendAll(
        raw,
        "billing.charge",
        ids.map((id) => ({
          body: chargeBody,
          headers: { "Nats-Msg-Id": id, "Ricochet-Timeout": "60000" },
        })),
        { window: batch, timeoutMs: 5_000 },
      );
      samples.push(store.bytes);
      ids.forEach((id, i) => {
        sent.push({ id, reply: replies[i] as RawReply });
      });
      if (replies.every((r) => r.code === "OVERLOADED")) fullBatches++;
    }
    const elapsed = Date.now() - t0;
    const admitted = sent.filter((s) => s.reply.code === undefined);
    const refused = sent.filter((s) => s.reply.code !== undefined);
    console.info(
      `budget ${store.maxBytes}: ${admitted.length} admitted, ${refused.length} refused in ${sent.length} calls; bytes after each batch ${JSON.stringify(samples)}`,
    );

    expect(fullBatches).toBe(2); // the store filled up within maxBatches
    expect(Math.max(...samples)).toBeLessThanOrEqual(store.maxBytes + 4096);
    expect(admitted.length).toBeGreaterThan(0);
    expect(refused.length).toBeGreaterThan(0);
    for (const { reply } of refused) {
      expect(reply.code).toBe("OVERLOADED");
      expect(reply.headers["Nats-Service-Error-Code"]).toBe("429");
      const retryAfterMs = (reply.details as { retryAfterMs?: unknown }).retryAfterMs;
      expect(retryAfterMs).toBeTypeOf("number");
      expect(retryAfterMs as number).toBeGreaterThan(0);
      // Its deadline plus the margin, rounded up to the store's bucket for it (within a quarter of it).
      expect(retryAfterMs as number).toBeLessThanOrEqual((60_000 + 1_000) * 1.25 + 1_000);
    }
    for (const { id, reply } of admitted) {
      expect(reply.data).toBe(JSON.stringify({ chargeId: `ch_${id}`, balanceCents: 99 }));
    }
    // The handler ran for exactly the admitted calls; the refused ones never reached it.
    expect(runs).toBe(admitted.length);
    const m = metrics.snapshot().responder["billing.charge"];
    expect(m?.outcomes).toEqual({ OK: admitted.length });
    expect(m?.dedupe.refused).toBe(refused.length);
    // Said once, not per refused call (at most once a second).
    const warnings = logs.lines.filter((l) => String(l.msg).includes("dedupe store full"));
    expect(warnings.length).toBeGreaterThanOrEqual(1);
    expect(warnings.length).toBeLessThanOrEqual(Math.ceil(elapsed / 1000) + 1);

    // Every admitted id is still remembered: it replays its reply, or (the oldest, whose replies were
    // dropped to make room before the store refused anything) answers REPLY_DROPPED. None runs again.
    const again = await sendAll(
      raw,
      "billing.charge",
      admitted.map(({ id }) => ({
        body: chargeBody,
        headers: { "Nats-Msg-Id": id, "Ricochet-Timeout": "60000" },
      })),
      { window: batch, timeoutMs: 5_000 },
    );
    const dropped = again.filter((r) => r.code === "REPLY_DROPPED");
    for (const r of dropped) expect(r.headers["Nats-Service-Error-Code"]).toBe("410");
    again.forEach((r, i) => {
      if (r.code !== "REPLY_DROPPED") expect(r.data).toBe(admitted[i]?.reply.data);
    });
    expect(dropped.length).toBeGreaterThan(0);
    expect(runs).toBe(admitted.length);
    const dedupe = metrics.snapshot().responder["billing.charge"]?.dedupe;
    expect((dedupe?.replayed ?? 0) + (dedupe?.dropped ?? 0)).toBe(admitted.length);
    expect(dedupe?.dropped).toBe(dropped.length);

    // A ricochet client that does not retry sees the refusal as a typed OVERLOADED.
    const client = createClient(billing, {
      transport: natsTransport(await conn()),
      retry: { attempts: 1 },
    });
    cleanup.push(() => client.close());
    const err = await rejection(
      client.charge({ accountId: "a", amountCents: 1 }, { id: "flood-client", timeoutMs: 60_000 }),
    );
    expect(err.code).toBe("OVERLOADED");
    expect((err.details as { retryAfterMs: number }).retryAfterMs).toBeGreaterThan(0);
    expect(runs).toBe(admitted.length);
    expect(store.bytes).toBeLessThanOrEqual(store.maxBytes + 4096);
  });
});
