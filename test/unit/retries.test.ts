import { getEventListeners } from "node:events";
import { pino } from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { CLIENT_INTERNALS, createClient } from "../../src/client.js";
import { RpcError } from "../../src/errors.js";
import { readCallMeta } from "../../src/handle.js";
import { type CallToken, encodeBody, encodeError, parseCallToken } from "../../src/protocol.js";
import { createResponder, type Handlers } from "../../src/responder.js";
import { type MemoryTransport, memoryTransport } from "../../src/transport/memory.js";
import type { TransportMessage } from "../../src/transport/types.js";
import {
  billing,
  billingHandlers,
  deferred,
  rejection,
  withoutProgress,
} from "../fixtures/billing.js";

/** A logger whose lines resolve waiters, so tests can await what the library reports. */
function watchLogs() {
  const waiters: Array<[string, () => void]> = [];
  const logger = pino(
    { level: "debug" },
    {
      write(line: string) {
        const msg = (JSON.parse(line) as { msg: string }).msg;
        for (const [text, resolve] of waiters) if (msg === text) resolve();
      },
    },
  );
  const next = (text: string) =>
    new Promise<void>((resolve) => {
      waiters.push([text, resolve]);
    });
  return { logger, next };
}

const timeouts = () => process.getActiveResourcesInfo().filter((r) => r === "Timeout").length;

/**
 * A stand-in responder on billing.echo that answers nothing: it records each request, and `nth(n)`
 * resolves once the n-th has arrived.
 */
function recordRequests(t: MemoryTransport) {
  const requests: TransportMessage[] = [];
  const waiters: Array<[number, () => void]> = [];
  t.subscribe(
    "billing.echo",
    (m) => {
      requests.push(m);
      for (const [n, resolve] of waiters) if (requests.length >= n) resolve();
    },
    { queue: "billing" },
  );
  const nth = (n: number) =>
    new Promise<void>((resolve) => {
      if (requests.length >= n) resolve();
      else waiters.push([n, resolve]);
    });
  /** The reply subject of the n-th request (1-based). */
  const reply = (n: number) => requests[n - 1]?.reply as string;
  return { requests, nth, reply };
}

/** Publishes a retryable refusal with `code` to `reply`, as a responder would. */
function refuse(t: MemoryTransport, reply: string, code: "OVERLOADED" | "UNAVAILABLE") {
  const e = encodeError(new RpcError(code, `billing.echo: ${code}; retry`));
  t.publish(reply, e.data, { headers: e.headers });
}

describe("retries", () => {
  let t: MemoryTransport;
  const cleanup: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const c of cleanup.splice(0).reverse()) await c();
    await t?.close();
  });
  const serve = async (handlers: Handlers<typeof billing>, opts = {}) => {
    const r = createResponder(billing, handlers, { transport: t, ...opts });
    await r.start();
    cleanup.push(() => r.stop());
    return r;
  };
  const client = (opts = {}) => {
    const c = createClient(billing, { transport: t, ...opts });
    cleanup.push(() => c.close());
    return c;
  };

  it("rides out a responder restart: retries NO_RESPONDERS past its attempts until one starts, and completes", async () => {
    t = memoryTransport();
    const logs = watchLogs();
    let unheard = 0;
    let enough!: () => void;
    const tried = new Promise<void>((resolve) => {
      enough = resolve;
    });
    const c = client({
      logger: logs.logger,
      retry: { attempts: 3, baseMs: 4, maxMs: 8 },
      onRetry: ({ code }: { code: string }) => {
        if (code === "NO_RESPONDERS" && ++unheard === 6) enough();
      },
    });
    const retrying = logs.next(
      "no responder received the attempt; retrying until one does or the deadline passes",
    );
    const call = c.echo({ text: "eventually" }, { timeoutMs: 10_000 });
    await retrying;
    // Twice the call's attempts found nobody: none of them counted.
    await tried;
    await serve(billingHandlers);
    await expect(call).resolves.toEqual({ text: "eventually" });
    expect(unheard).toBeGreaterThanOrEqual(6);
  });

  it("keeps one id and one reply subject across attempts, and sends the attempt number from 2 on (wire: headers)", async () => {
    t = memoryTransport();
    const seen: TransportMessage[] = [];
    t.subscribe(
      "billing.echo",
      (m) => {
        seen.push(m);
        if (seen.length === 3 && m.reply) t.publish(m.reply, encodeBody({ text: "third time" }));
      },
      { queue: "billing" },
    );
    const out = await client({ wire: "headers", retry: { attempts: 3, baseMs: 1, maxMs: 1 } }).echo(
      { text: "x" },
      { id: "same-id", timeoutMs: 600 },
    );
    expect(out).toEqual({ text: "third time" });
    expect(seen.map((m) => m.header("Nats-Msg-Id"))).toEqual(["same-id", "same-id", "same-id"]);
    expect(new Set(seen.map((m) => m.reply)).size).toBe(1);
    expect(seen.map((m) => m.header("Ricochet-Attempt"))).toEqual([undefined, "2", "3"]);
    const budgets = seen.map((m) => Number(m.header("Ricochet-Timeout")));
    expect(budgets[0]).toBeLessThanOrEqual(600);
    expect(budgets[1]).toBeLessThan(budgets[0] as number);
    expect(budgets[2]).toBeLessThan(budgets[1] as number);
  });

  it("keeps one id and one call key across attempts in a compact call's token, with the attempt and a shrinking budget", async () => {
    t = memoryTransport();
    const seen: TransportMessage[] = [];
    t.subscribe(
      "billing.echo",
      (m) => {
        seen.push(m);
        // Attempt 3 is answered on attempt 1's reply subject: the call still completes.
        if (seen.length === 3 && seen[0]?.reply)
          t.publish(seen[0].reply, encodeBody({ text: "third time" }));
      },
      { queue: "billing" },
    );
    const out = await client({ retry: { attempts: 3, baseMs: 1, maxMs: 1 } }).echo(
      { text: "x" },
      { id: "same-id", timeoutMs: 600 },
    );
    expect(out).toEqual({ text: "third time" });
    expect(seen.map((m) => m.headers())).toEqual([{}, {}, {}]);
    const tokens = seen.map((m) => parseCallToken(m.reply ?? "") as CallToken);
    expect(tokens.map((k) => k.id)).toEqual(["same-id", "same-id", "same-id"]);
    expect(new Set(tokens.map((k) => k.key)).size).toBe(1);
    expect(tokens.map((k) => k.attempt)).toEqual([1, 2, 3]);
    expect(tokens[0]?.budgetMs).toBeLessThanOrEqual(600);
    expect(tokens[1]?.budgetMs).toBeLessThan(tokens[0]?.budgetMs as number);
    expect(tokens[2]?.budgetMs).toBeLessThan(tokens[1]?.budgetMs as number);
  });

  it("completes a call with a late reply to attempt 1 that arrives during attempt 2", async () => {
    t = memoryTransport();
    const attempt2 = deferred();
    const attempts: number[] = [];
    await serve(
      {
        ...billingHandlers,
        echo: async ({ text }, ctx) => {
          attempts.push(ctx.attempt);
          if (ctx.attempt === 1) {
            await attempt2.promise;
            return { text: `${text} from attempt 1` };
          }
          attempt2.resolve();
          // Attempt 2 never answers on its own; only attempt 1's late reply can settle the call.
          await new Promise((_, reject) =>
            ctx.signal.addEventListener("abort", () => reject(ctx.signal.reason)),
          );
          return { text: "unreachable" };
        },
      },
      // Without dedupe, so attempt 2 reaches a handler of its own instead of joining attempt 1.
      { dedupe: false },
    );
    // A caller that does not ask for progress messages: its slow attempt 1 is retried.
    const out = await client({
      transport: withoutProgress(t),
      retry: { attempts: 2, baseMs: 1, maxMs: 1 },
    }).echo({ text: "hi" }, { timeoutMs: 400 });
    expect(out).toEqual({ text: "hi from attempt 1" });
    expect(attempts).toEqual([1, 2]);
  });

  it("ignores a late retryable refusal of attempt 1 while attempt 2 is out (compact calls)", async () => {
    t = memoryTransport();
    const { requests, nth, reply } = recordRequests(t);
    const c = client({
      transport: withoutProgress(t),
      retry: { attempts: 3, baseMs: 1, maxMs: 1 },
    });
    // Attempt 1 goes unanswered until its window ends; attempt 2 is sent.
    const call = c.echo({ text: "x" }, { timeoutMs: 900 });
    await nth(2);
    expect(parseCallToken(reply(1))).toMatchObject({ attempt: 1 });
    expect(parseCallToken(reply(2))).toMatchObject({ attempt: 2 });
    // Now attempt 1's responder refuses it, late. Without the attempt in the token, this would end
    // attempt 2 at once and send attempt 3 after a 1 ms backoff.
    refuse(t, reply(1), "OVERLOADED");
    await new Promise((resolve) => setTimeout(resolve, 50)); // room for a wrongly sent attempt 3
    t.publish(reply(2), encodeBody({ text: "x from attempt 2" }));
    expect(await call).toEqual({ text: "x from attempt 2" });
    expect(requests).toHaveLength(2);
  });

  it("counts a refusal from an earlier attempt whose holder sent a progress message since (compact calls)", async () => {
    t = memoryTransport();
    const { nth, reply } = recordRequests(t);
    const random = Math.random;
    Math.random = () => 0.5; // backoffs of 100 ms: room to send a progress message during one
    cleanup.push(async () => {
      Math.random = random;
    });
    // Windows of 10 s: attempt 3 comes either at once, for the refusal, or when the window ends.
    const retries: Array<{ attempt: number; code: string }> = [];
    const c = client({
      retry: { attempts: 3, baseMs: 200, maxMs: 200 },
      onRetry: ({ attempt, code }: { attempt: number; code: string }) =>
        retries.push({ attempt, code }),
    });
    const call = c.echo({ text: "x" }, { timeoutMs: 30_000 });
    await nth(1);
    const r1 = reply(1);
    refuse(t, r1, "OVERLOADED"); // attempt 1 refused: attempt 2 after a backoff
    await nth(2);
    refuse(t, reply(2), "OVERLOADED"); // attempt 2 refused: a backoff again
    await t.flush(); // delivered: the call is in its backoff
    // During that backoff, attempt 1's holder says it still holds the call (which cancels the retry),
    // then gives up on it: that refusal ends the revived attempt, and attempt 3 goes out at once.
    t.publish(r1, new Uint8Array(0), { headers: { "Ricochet-Progress": "holder-a" } });
    await t.flush();
    refuse(t, r1, "UNAVAILABLE");
    await nth(3);
    expect(parseCallToken(reply(3))).toMatchObject({ attempt: 3 });
    // Sent for attempt 1's refusal, not because the revived attempt waited out its window (TIMEOUT).
    expect(retries).toEqual([
      { attempt: 2, code: "OVERLOADED" },
      { attempt: 3, code: "UNAVAILABLE" },
    ]);
    t.publish(reply(3), encodeBody({ text: "x from attempt 3" }));
    expect(await call).toEqual({ text: "x from attempt 3" });
  });

  it("lets a late refusal end the current attempt when the call sends headers (one reply subject for all attempts)", async () => {
    t = memoryTransport();
    const { nth, reply } = recordRequests(t);
    const c = client({
      transport: withoutProgress(t),
      wire: "headers",
      retry: { attempts: 3, baseMs: 1, maxMs: 1 },
    });
    const call = c.echo({ text: "x" }, { timeoutMs: 900 });
    await nth(2);
    expect(reply(1)).toBe(reply(2));
    // Attempt 1's refusal, late: on a shared reply subject it cannot be told apart, and ends attempt 2.
    refuse(t, reply(1), "OVERLOADED");
    await nth(3);
    t.publish(reply(1), encodeBody({ text: "x" }));
    expect(await call).toEqual({ text: "x" });
  });

  it("treats timeoutMs as one deadline across all attempts", async () => {
    t = memoryTransport();
    const budgets: number[] = [];
    t.subscribe("billing.echo", (m) => budgets.push(readCallMeta(m, false).timeout as number), {
      queue: "billing",
    });
    const err = await rejection(
      client({ retry: { attempts: 3, baseMs: 1, maxMs: 1 } }).echo(
        { text: "x" },
        { timeoutMs: 1_500 },
      ),
    );
    expect(err.code).toBe("TIMEOUT");
    expect(err.message).toMatch(/3 attempts/);
    expect(budgets).toHaveLength(3);
    // Each attempt got a share of what was left, not a fresh 1500 ms.
    expect(budgets[1]).toBeLessThanOrEqual(1_500 - 1_500 / 3 + 5);
    expect(budgets[2]).toBeLessThanOrEqual(budgets[1] as number);
  });

  it("never retries a reply that breaks the contract", async () => {
    t = memoryTransport();
    let received = 0;
    t.subscribe("billing.echo", (m) => {
      received++;
      if (m.reply) t.publish(m.reply, encodeBody({ wrong: true }));
    });
    const c = client({ retry: { attempts: 5, baseMs: 1, maxMs: 1 } });
    expect((await rejection(c.echo({ text: "x" }))).code).toBe("INVALID_RESPONSE");
    await c.ping(undefined).catch(() => undefined); // a later call on the bus: the first is fully delivered
    expect(received).toBe(1);
  });

  it("retries OVERLOADED, so another member of the queue group takes the call", async () => {
    t = memoryTransport();
    const gate = deferred();
    const busy = deferred();
    await serve(
      {
        ...billingHandlers,
        echo: async ({ text }) => {
          busy.resolve();
          await gate.promise;
          return { text: `A:${text}` };
        },
      },
      { concurrency: 1, maxQueue: 0 },
    );
    const c = client({ retry: { attempts: 3, baseMs: 1, maxMs: 1 } });
    const first = c.echo({ text: "1" });
    await busy.promise;
    await serve({ ...billingHandlers, echo: ({ text }) => ({ text: `B:${text}` }) });
    // Round robin sends the next call to A (busy → OVERLOADED), and its retry to B.
    await expect(c.echo({ text: "2" })).resolves.toEqual({ text: "B:2" });
    gate.resolve();
    await expect(first).resolves.toEqual({ text: "A:1" });
  });

  it("does not start a handler whose deadline passed before it began", async () => {
    t = memoryTransport();
    let runs = 0;
    await serve({
      ...billingHandlers,
      echo: ({ text }) => {
        runs++;
        return { text };
      },
    });
    const replies: TransportMessage[] = [];
    const got = deferred();
    t.subscribe("raw.reply", (m) => {
      replies.push(m);
      got.resolve();
    });
    t.publish("billing.echo", encodeBody({ text: "x" }), {
      reply: "raw.reply",
      headers: { "Ricochet-Timeout": "0" },
    });
    await got.promise;
    expect(replies[0]?.header("Nats-Service-Error-Code")).toBe("504");
    expect(runs).toBe(0);
  });

  it("lets a nested call inherit the parent's deadline and cancellation through { parent: ctx }", async () => {
    t = memoryTransport();
    const inner = deferred<{ deadline: number }>();
    const outerSeen = deferred<{ deadline: number }>();
    const c = client();
    await serve({
      ...billingHandlers,
      echo: (_req, ctx) => {
        inner.resolve({ deadline: ctx.deadline });
        return { text: "inner" };
      },
      charge: async (_req, ctx) => {
        outerSeen.resolve({ deadline: ctx.deadline });
        await c.echo({ text: "nested" }, { parent: ctx, timeoutMs: 60_000 });
        return { chargeId: "c", balanceCents: 1 };
      },
    });
    await c.charge({ accountId: "a", amountCents: 1 }, { timeoutMs: 1_000 });
    expect((await inner.promise).deadline).toBeLessThanOrEqual(
      (await outerSeen.promise).deadline + 5,
    );
    const parent = new AbortController();
    parent.abort(new Error("parent gone"));
    const err = await rejection(
      c.echo({ text: "x" }, { parent: { deadline: Date.now() + 1000, signal: parent.signal } }),
    );
    expect(err.code).toBe("CANCELLED");
  });

  it("leaves no pending entries, abort listeners or timers behind after many cancelled and timed-out calls", async () => {
    t = memoryTransport();
    // A member that never answers: every call ends by its deadline or its signal.
    t.subscribe("billing.echo", () => undefined, { queue: "billing" });
    // ...and one that does, so settled successes are counted too.
    t.subscribe("billing.ping", (m) => m.reply && t.publish(m.reply, encodeBody("pong")), {
      queue: "billing",
    });
    const c = client({ retry: { attempts: 2, baseMs: 1, maxMs: 2 } });
    const shared = new AbortController();
    const before = timeouts();
    const calls: Array<Promise<RpcError>> = [];
    for (let i = 0; i < 100; i++) {
      const own = new AbortController();
      const signal = AbortSignal.any([shared.signal, own.signal]);
      calls.push(
        rejection(
          c.echo(
            { text: String(i) },
            { signal: i % 2 ? signal : shared.signal, timeoutMs: i % 2 ? 60_000 : 50 },
          ),
        ),
      );
      if (i % 2) queueMicrotask(() => own.abort());
    }
    const codes = (await Promise.all(calls)).map((e) => e.code);
    expect(new Set(codes)).toEqual(new Set(["CANCELLED", "TIMEOUT"]));
    const pongs = await Promise.all(
      Array.from({ length: 50 }, () => c.ping(undefined, { signal: shared.signal })),
    );
    expect(pongs).toEqual(Array(50).fill("pong"));
    const internals = (c as unknown as Record<symbol, () => { pending: number }>)[CLIENT_INTERNALS];
    expect(internals?.().pending).toBe(0);
    expect(getEventListeners(shared.signal, "abort")).toHaveLength(0);
    // No more timers than before (one left by an earlier test may have fired meanwhile).
    expect(timeouts()).toBeLessThanOrEqual(before);
  });
});
