/**
 * Calls across accounts (a service export and import). nats-server replaces the reply subject of an
 * imported request, so a compact call's token never reaches the responder: the responder says so, once
 * per method, naming the caller's account, and a client with `wire: "headers"` keeps its call id,
 * deadline and deduplication across the import.
 */
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createClient } from "../../src/client.js";
import { createResponder, type Responder } from "../../src/responder.js";
import { natsTransport } from "../../src/transport/nats.js";
import { billing, billingHandlers, captureLogs } from "../fixtures/billing.js";
import { type NatsServer, startNatsServer } from "../support/nats-server.js";

const CONFIG = `accounts {
  A: { users: [ { user: a, password: a } ], exports: [ { service: "billing.*" } ] }
  B: { users: [ { user: b, password: b } ], imports: [ { service: { account: A, subject: "billing.*" } } ] }
}`;

describe("calls across accounts (service import)", () => {
  let server: NatsServer;
  let a: NatsConnection;
  let b: NatsConnection;
  let responder: Responder;
  const logs = captureLogs();
  const seen: Array<{ id: string; left: number }> = [];

  beforeAll(async () => {
    server = await startNatsServer({ config: CONFIG });
    a = await connect({ servers: server.url, user: "a", pass: "a" });
    b = await connect({ servers: server.url, user: "b", pass: "b" });
    responder = createResponder(
      billing,
      {
        ...billingHandlers,
        echo: ({ text }, ctx) => {
          seen.push({ id: ctx.id, left: ctx.deadline - Date.now() });
          return { text };
        },
      },
      { transport: natsTransport(a), logger: pino({ level: "warn" }, logs.stream) },
    );
    await responder.start();
  });
  afterAll(async () => {
    await responder?.stop();
    await a?.close();
    await b?.close();
    await server?.[Symbol.asyncDispose]();
  });

  it("with wire: headers, a call keeps its id and deadline across the import, and runs once", async () => {
    const client = createClient(billing, {
      transport: natsTransport(b),
      wire: "headers",
      timeoutMs: 2000,
    });
    seen.length = 0;
    await client.echo({ text: "x" }, { id: "order-1" });
    await client.echo({ text: "x" }, { id: "order-1" }); // a retry: replayed, not run
    await client.close();
    expect(seen.map((s) => s.id)).toEqual(["order-1"]);
    expect(seen[0]?.left).toBeLessThanOrEqual(2000);
    expect(logs.lines.filter((l) => String(l.msg).includes("service import"))).toEqual([]);
  });

  it("a compact call loses its token at the import: the responder warns once, naming the account", async () => {
    const client = createClient(billing, { transport: natsTransport(b), timeoutMs: 2000 });
    seen.length = 0;
    await client.echo({ text: "x" }, { id: "order-2" });
    await client.echo({ text: "x" }, { id: "order-2" });
    await client.close();
    // What the warning is about: the id never arrived, so both ran, under the default budget.
    expect(seen).toHaveLength(2);
    expect(seen.every((s) => s.id !== "order-2" && s.left > 2000)).toBe(true);
    const warnings = logs.lines.filter((l) => String(l.msg).includes("service import"));
    expect(warnings).toHaveLength(1);
    expect(warnings[0]?.msg).toMatch(
      /billing\.echo: a call from account B came through a service import .*wire: "headers"/,
    );
  });
});
