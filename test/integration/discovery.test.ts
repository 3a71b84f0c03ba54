/**
 * NATS micro discovery, checked with a real peer: the `@nats-io/services` client finds a ricochet
 * responder, reads its endpoints with their JSON Schemas, and its statistics after known calls.
 */
import type { NatsConnection } from "@nats-io/nats-core";
import { Svcm } from "@nats-io/services";
import { connect } from "@nats-io/transport-node";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { createClient } from "../../src/client.js";
import { createResponder, type Responder } from "../../src/responder.js";
import { natsTransport } from "../../src/transport/nats.js";
import { billing, captureLogs } from "../fixtures/billing.js";

async function collect<T>(iter: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of iter) out.push(item);
  return out;
}

describe("NATS micro discovery", () => {
  let responderNc: NatsConnection;
  let peerNc: NatsConnection;
  let responder: Responder;
  const startLog = captureLogs();
  const id = `disc${Date.now().toString(36)}`;

  beforeAll(async () => {
    const servers = inject("natsUrl");
    [responderNc, peerNc] = await Promise.all([connect({ servers }), connect({ servers })]);
    responder = createResponder(
      billing,
      {
        charge: (req, ctx) => {
          if (req.amountCents > 100) throw ctx.fail("INSUFFICIENT_FUNDS", { balanceCents: 100 });
          return { chargeId: "c1", balanceCents: 100 - req.amountCents };
        },
        // Async and measurably slow: STATS must count the awaited time, not the synchronous part.
        echo: async ({ text }) => {
          await new Promise((resolve) => setTimeout(resolve, 25));
          return { text };
        },
        ping: () => "pong" as const,
      },
      {
        transport: natsTransport(responderNc),
        instanceId: id,
        logger: pino({ level: "info" }, startLog.stream),
      },
    );
    await responder.start();
    const client = createClient(billing, { transport: natsTransport(peerNc) });
    await client.charge({ accountId: "a", amountCents: 5 });
    await client.charge({ accountId: "a", amountCents: 7 });
    await client.charge({ accountId: "a", amountCents: 500 }).catch(() => undefined);
    await client.echo({ text: "slow" });
    await client.close();
  });
  afterAll(async () => {
    await responder.stop();
    await Promise.all([responderNc.close(), peerNc.close()]);
  });

  it("answers PING from a @nats-io/services client with its name, id and version", async () => {
    const pings = await collect(
      await new Svcm(peerNc).client({ strategy: "timer", maxWait: 1500 }).ping("billing", id),
    );
    console.info("@nats-io/services ping:", JSON.stringify(pings));
    expect(pings).toEqual([
      expect.objectContaining({
        type: "io.nats.micro.v1.ping_response",
        name: "billing",
        id,
        version: "1.0.0",
      }),
    ]);
  });

  it("says in its start log line which server it is on, and that it does not consume durable commands", () => {
    const line = startLog.lines.find((l) => String(l.msg).startsWith("responder started"));
    expect(line).toMatchObject({ durable: false, server: expect.stringMatching(/:\d+$/) });
    expect(line?.msg).toMatch(/durable commands are not consumed here; pass durable: queue/);
  });

  it("lists every method in INFO with its subject, queue group and JSON Schemas", async () => {
    const [info] = await collect(
      await new Svcm(peerNc).client({ strategy: "timer", maxWait: 1500 }).info("billing", id),
    );
    console.info("@nats-io/services info:", JSON.stringify(info));
    expect(info).toMatchObject({
      type: "io.nats.micro.v1.info_response",
      name: "billing",
      id,
      version: "1.0.0",
      description: "Charges accounts",
      // Durable callers can see that this instance does not consume their commands.
      metadata: { "ricochet.version": "2", "ricochet.durable": "false" },
    });
    expect(info?.endpoints.map((e) => [e.name, e.subject, e.queue_group])).toEqual([
      ["charge", "billing.charge", "billing"],
      ["echo", "billing.echo", "billing"],
      ["ping", "billing.ping", "billing"],
    ]);
    const charge = info?.endpoints[0]?.metadata ?? {};
    const request = JSON.parse(charge.request_schema ?? "{}");
    expect(request.properties.accountId).toMatchObject({ type: "string" });
    expect(request.required).toEqual(["accountId", "amountCents"]); // `note` has a default: optional on input
    expect(
      JSON.parse(charge.errors_schema ?? "{}").INSUFFICIENT_FUNDS.properties.balanceCents,
    ).toMatchObject({ type: "number" });
  });

  it("reports STATS that count the awaited calls, errors and processing time", async () => {
    const [stats] = await collect(
      await new Svcm(peerNc).client({ strategy: "timer", maxWait: 1500 }).stats("billing", id),
    );
    console.info("@nats-io/services stats:", JSON.stringify(stats));
    const charge = stats?.endpoints?.find((e) => e.name === "charge");
    expect(charge).toMatchObject({
      num_requests: 3,
      num_errors: 1,
      last_error: "400:billing.charge failed with INSUFFICIENT_FUNDS",
    });
    expect(charge?.processing_time).toBeGreaterThan(0);
    expect(charge?.average_processing_time).toBeGreaterThan(0);
    const echo = stats?.endpoints?.find((e) => e.name === "echo");
    expect(echo?.num_requests).toBe(1);
    expect(echo?.average_processing_time).toBeGreaterThanOrEqual(25e6); // nanoseconds, awaited
    expect(stats?.endpoints?.find((e) => e.name === "ping")?.num_requests).toBe(0);
    expect(responder.stats().charge).toMatchObject({ requests: 3, errors: 1 });
  });

  it("answers the name-only subject form, $SRV.INFO.<service>, to a plain request", async () => {
    const reply = await peerNc.request("$SRV.INFO.billing", "", { timeout: 2000 });
    expect(reply.json()).toMatchObject({ type: "io.nats.micro.v1.info_response", name: "billing" });
  });

  it("answers the plain $SRV.PING that every instance of every service hears", async () => {
    const pings = await collect(
      await new Svcm(peerNc).client({ strategy: "timer", maxWait: 1500 }).ping(),
    );
    expect(pings.some((p) => p.id === id)).toBe(true);
  });
});
