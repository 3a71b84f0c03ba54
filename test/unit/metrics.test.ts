import * as prom from "prom-client";
import { afterEach, describe, expect, it } from "vitest";
import { z } from "zod";
import { createClient } from "../../src/client.js";
import { defineContract, method } from "../../src/contract.js";
import { createMetrics } from "../../src/metrics.js";
import { createResponder } from "../../src/responder.js";
import { type MemoryTransport, memoryTransport } from "../../src/transport/memory.js";
import { billing, billingHandlers, rejection } from "../fixtures/billing.js";

const nobody = defineContract({
  service: "nobody",
  version: "1.0.0",
  methods: { m: method({ request: z.object({}), response: z.object({}) }) },
});

describe("metrics", () => {
  let t: MemoryTransport;
  const cleanup: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const c of cleanup.splice(0).reverse()) await c();
    await t.close();
  });

  it("counts outcomes, latency, retries and dedupe hits, and exports them to Prometheus", async () => {
    t = memoryTransport();
    const metrics = createMetrics();
    const registry = new prom.Registry();
    metrics.registerPrometheus(prom, registry);
    const responder = createResponder(billing, billingHandlers, {
      transport: t,
      ...metrics.responder,
    });
    await responder.start();
    const client = createClient(billing, { transport: t, ...metrics.client });
    const lonely = createClient(nobody, {
      transport: t,
      ...metrics.client,
      // Nobody serves it: it is retried until its deadline.
      timeoutMs: 100,
      retry: { attempts: 2, baseMs: 1, maxMs: 4 },
    });
    cleanup.push(
      () => responder.stop(),
      () => client.close(),
      () => lonely.close(),
    );

    await client.charge({ accountId: "a", amountCents: 1 }, { id: "k1" });
    await client.charge({ accountId: "a", amountCents: 2 });
    await client.charge({ accountId: "a", amountCents: 1 }, { id: "k1" }); // replayed by dedupe
    expect((await rejection(client.charge({ accountId: "a", amountCents: 500 }))).code).toBe(
      "INSUFFICIENT_FUNDS",
    );
    expect((await rejection(lonely.m({}))).code).toBe("NO_RESPONDERS");

    const snap = metrics.snapshot();
    expect(snap.client["billing.charge"]?.outcomes).toEqual({ OK: 3, INSUFFICIENT_FUNDS: 1 });
    expect(snap.responder["billing.charge"]?.outcomes).toEqual({ OK: 2, INSUFFICIENT_FUNDS: 1 });
    expect(snap.responder["billing.charge"]?.dedupe).toEqual({
      replayed: 1,
      joined: 0,
      conflict: 0,
      refused: 0,
      dropped: 0,
    });
    expect(snap.client["nobody.m"]).toMatchObject({ outcomes: { NO_RESPONDERS: 1 }, inFlight: 0 });
    expect(snap.client["nobody.m"]?.retries).toBeGreaterThan(2);
    expect(snap.client["billing.charge"]?.latency["+Inf"]).toBe(4);

    const text = await registry.metrics();
    const line = (name: string, labels: string) =>
      Number(new RegExp(`^${name}\\{${labels}\\} (\\S+)$`, "m").exec(text)?.[1] ?? Number.NaN);
    expect(
      line("ricochet_calls_total", 'side="client",service="billing",method="charge",code="OK"'),
    ).toBe(3);
    expect(
      line(
        "ricochet_calls_total",
        'side="client",service="billing",method="charge",code="INSUFFICIENT_FUNDS"',
      ),
    ).toBe(1);
    expect(
      line("ricochet_calls_total", 'side="responder",service="billing",method="charge",code="OK"'),
    ).toBe(2);
    expect(
      line(
        "ricochet_dedupe_total",
        'side="responder",service="billing",method="charge",outcome="replayed"',
      ),
    ).toBe(1);
    expect(line("ricochet_retries_total", 'side="client",service="nobody",method="m"')).toBe(
      snap.client["nobody.m"]?.retries,
    );
    expect(
      line("ricochet_calls_in_flight", 'side="client",service="billing",method="charge"'),
    ).toBe(0);
    expect(
      line(
        "ricochet_call_duration_seconds_count",
        'side="client",service="billing",method="charge",code="OK"',
      ),
    ).toBe(3);
    expect(
      line(
        "ricochet_call_duration_seconds_bucket",
        'le="\\+Inf",side="client",service="billing",method="charge",code="OK"',
      ),
    ).toBe(3);
  });

  it("feeds the latency histogram of every registry it was registered with", async () => {
    t = memoryTransport();
    const metrics = createMetrics();
    const [r1, r2] = [new prom.Registry(), new prom.Registry()];
    metrics.registerPrometheus(prom, r1);
    metrics.registerPrometheus(prom, r2);
    const responder = createResponder(billing, billingHandlers, {
      transport: t,
      ...metrics.responder,
    });
    await responder.start();
    const client = createClient(billing, { transport: t, ...metrics.client });
    cleanup.push(
      () => responder.stop(),
      () => client.close(),
    );
    await client.echo({ text: "x" });
    for (const r of [r1, r2]) {
      expect(await r.metrics()).toMatch(
        /^ricochet_call_duration_seconds_count\{side="client",service="billing",method="echo",code="OK"\} 1$/m,
      );
    }
  });

  it("rejects histogram buckets that are not positive seconds", () => {
    expect(() => createMetrics({ buckets: [0, 1] })).toThrow(/buckets must be positive/);
  });
});
