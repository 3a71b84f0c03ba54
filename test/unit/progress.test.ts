/**
 * Progress messages on the memory transport: a responder holding a slow call tells the caller, which
 * then waits for it instead of retrying elsewhere; callers that do not ask get none; when the
 * messages stop, the caller retries. With `dedupe: false`, so what keeps a call to one run here is
 * the progress messages alone.
 */
import { afterEach, describe, expect, it } from "vitest";
import type { RetryInfo } from "../../src/call.js";
import { createClient } from "../../src/client.js";
import { encodeBody, HEADER_PROGRESS } from "../../src/protocol.js";
import { createResponder, type Handlers, type ResponderOptions } from "../../src/responder.js";
import { type MemoryTransport, memoryTransport } from "../../src/transport/memory.js";
import type { Transport, TransportMessage } from "../../src/transport/types.js";
import { billing, billingHandlers, deferred, withoutProgress } from "../fixtures/billing.js";

/** Wraps `transport` to report every message a client receives on its inbox. */
function observed(transport: Transport, seen: (m: TransportMessage) => void): Transport {
  return {
    ...transport,
    get maxPayload() {
      return transport.maxPayload;
    },
    publish: (s, d, o) => transport.publish(s, d, o),
    subscribe: (s, f, o) =>
      transport.subscribe(
        s,
        (m) => {
          seen(m);
          f(m);
        },
        o,
      ),
    flush: () => transport.flush(),
    createInbox: () => transport.createInbox(),
  };
}

describe("progress messages", () => {
  let t: MemoryTransport;
  const cleanup: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const c of cleanup.splice(0).reverse()) await c();
    await t?.close();
  });
  const serve = async (
    handlers: Handlers<typeof billing>,
    opts: Partial<ResponderOptions> = {},
  ) => {
    const r = createResponder(billing, handlers, { transport: t, dedupe: false, ...opts });
    await r.start();
    cleanup.push(() => r.stop());
    return r;
  };

  /** An echo handler that counts runs and holds each call until `progressSeen` progress messages came. */
  function slowEcho(progressSeen: () => Promise<void>) {
    let runs = 0;
    const handler: Handlers<typeof billing>["echo"] = async ({ text }) => {
      runs++;
      await progressSeen();
      return { text };
    };
    return {
      handler,
      get runs() {
        return runs;
      },
    };
  }

  it("keeps a call slower than its attempt window on the instance that holds it: two instances, no store, one run", async () => {
    t = memoryTransport();
    const progress: TransportMessage[] = [];
    const threeSeen = deferred();
    const echo = slowEcho(() => threeSeen.promise);
    const [a, b] = [
      await serve({ ...billingHandlers, echo: echo.handler }),
      await serve({ ...billingHandlers, echo: echo.handler }),
    ];
    const retries: RetryInfo[] = [];
    const client = createClient(billing, {
      transport: observed(t, (m) => {
        if (m.header(HEADER_PROGRESS) === undefined) return;
        progress.push(m);
        if (progress.length === 3) threeSeen.resolve();
      }),
      retry: { attempts: 3, baseMs: 1, maxMs: 1 },
      onRetry: (info) => retries.push(info),
    });
    cleanup.push(() => client.close());
    // A 600 ms deadline: a first attempt window of 200 ms. The handler outlasts three half-windows.
    await expect(client.echo({ text: "slow" }, { timeoutMs: 600 })).resolves.toEqual({
      text: "slow",
    });
    expect(echo.runs).toBe(1);
    expect(retries).toEqual([]);
    expect(progress.length).toBeGreaterThanOrEqual(3);
    for (const m of progress) {
      expect(m.data.length).toBe(0);
      expect([a.id, b.id]).toContain(m.header(HEADER_PROGRESS));
    }
  });

  it("sends no progress message to a caller that did not ask, whose retry then runs the call again without a store", async () => {
    t = memoryTransport();
    const attempt2 = deferred();
    let runs = 0;
    await serve({
      ...billingHandlers,
      echo: async ({ text }, ctx) => {
        runs++;
        if (ctx.attempt === 1) await attempt2.promise;
        else attempt2.resolve();
        return { text };
      },
    });
    const received: TransportMessage[] = [];
    const client = createClient(billing, {
      transport: observed(withoutProgress(t), (m) => received.push(m)),
      retry: { attempts: 2, baseMs: 1, maxMs: 1 },
    });
    cleanup.push(() => client.close());
    await expect(client.echo({ text: "x" }, { timeoutMs: 400 })).resolves.toEqual({ text: "x" });
    expect(runs).toBe(2); // dedupe: false; the default memoryDedupe would have joined attempt 1
    expect(received.filter((m) => m.header(HEADER_PROGRESS) !== undefined)).toEqual([]);
  });

  it("retries elsewhere once the progress messages stop (the holder died), and completes there", async () => {
    t = memoryTransport();
    // A holder that announces progress twice, then goes silent as a killed process would.
    let held = 0;
    t.subscribe(
      "billing.echo",
      (m) => {
        held++;
        if (m.reply === undefined) return;
        const reply = m.reply;
        const send = () =>
          t.publish(reply, new Uint8Array(0), { headers: { [HEADER_PROGRESS]: "dead" } });
        setTimeout(send, 40);
        setTimeout(send, 80);
      },
      { queue: "holder-only" },
    );
    const gate = deferred();
    let served = 0;
    const retries: RetryInfo[] = [];
    const client = createClient(billing, {
      transport: t,
      retry: { attempts: 3, baseMs: 1, maxMs: 1 },
      onRetry: (info) => {
        retries.push(info);
        gate.resolve();
      },
    });
    cleanup.push(() => client.close());
    const call = client.echo({ text: "survives" }, { timeoutMs: 1_500 });
    await gate.promise; // attempt 2 is out: only now does a real responder join
    await serve({
      ...billingHandlers,
      echo: ({ text }) => {
        served++;
        return { text };
      },
    });
    // Attempt 2 went to the silent holder too (it subscribes without the queue group); attempt 3 or
    // a later one reaches the responder.
    await expect(call).resolves.toEqual({ text: "survives" });
    expect(held).toBeGreaterThanOrEqual(1);
    expect(served).toBe(1);
    expect(retries.length).toBeGreaterThanOrEqual(1);
  });

  it("stops sending progress messages once the call's deadline passed, even if its handler runs on", async () => {
    t = memoryTransport();
    const release = deferred();
    await serve({
      ...billingHandlers,
      // Ignores ctx.signal: runs well past its caller's deadline.
      echo: async ({ text }) => {
        await release.promise;
        return { text };
      },
    });
    const progressAt: number[] = [];
    const client = createClient(billing, {
      transport: observed(t, (m) => {
        if (m.header(HEADER_PROGRESS) !== undefined) progressAt.push(Date.now());
      }),
      retry: { attempts: 1 },
    });
    cleanup.push(async () => release.resolve());
    cleanup.push(() => client.close());
    const started = Date.now();
    await expect(client.echo({ text: "hung" }, { timeoutMs: 200 })).rejects.toMatchObject({
      code: "TIMEOUT",
    });
    const before = progressAt.length;
    // Progress would come every 100 ms (half the 200 ms window): watch four more intervals.
    await new Promise((r) => setTimeout(r, 400));
    expect(before).toBeGreaterThanOrEqual(1);
    expect(progressAt.length).toBe(before);
    expect(Math.max(...progressAt) - started).toBeLessThan(200 + 50);
  });

  it("a plain request with a reply subject and no progress header gets exactly one message", async () => {
    t = memoryTransport();
    const done = deferred();
    await serve({
      ...billingHandlers,
      echo: async ({ text }) => {
        // Past half of the caller's budget (250 ms): were progress keyed on Ricochet-Timeout, it would come.
        await new Promise((r) => setTimeout(r, 150));
        return { text };
      },
    });
    const got: TransportMessage[] = [];
    t.subscribe("plain.inbox", (m) => {
      got.push(m);
      done.resolve();
    });
    t.publish("billing.echo", encodeBody({ text: "p" }), {
      reply: "plain.inbox",
      headers: { "Nats-Msg-Id": "plain-1", "Ricochet-Timeout": "250" },
    });
    await done.promise;
    await t.flush();
    expect(got).toHaveLength(1);
    expect(got[0]?.header(HEADER_PROGRESS)).toBeUndefined();
  });
});
