/**
 * OpenTelemetry across a real nats-server: one trace, the responder's span a child of the client's,
 * and a span started inside the handler a child of the responder's.
 */
import type { Msg, NatsConnection } from "@nats-io/nats-core";
import { connect } from "@nats-io/transport-node";
import * as otel from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { W3CTraceContextPropagator } from "@opentelemetry/core";
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  SimpleSpanProcessor,
} from "@opentelemetry/sdk-trace-base";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { createClient } from "../../src/client.js";
import { parseCallToken } from "../../src/protocol.js";
import { createResponder, type Responder } from "../../src/responder.js";
import { clientTracing, responderTracing } from "../../src/tracing.js";
import { natsTransport } from "../../src/transport/nats.js";
import { billing, billingHandlers, deferred, rejection } from "../fixtures/billing.js";

describe("OpenTelemetry tracing", () => {
  const exporter = new InMemorySpanExporter();
  const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
  const contextManager = new AsyncLocalStorageContextManager().enable();
  let ncs: NatsConnection[];
  let responder: Responder;

  beforeAll(async () => {
    otel.trace.setGlobalTracerProvider(provider);
    otel.context.setGlobalContextManager(contextManager);
    otel.propagation.setGlobalPropagator(new W3CTraceContextPropagator());
    const servers = inject("natsUrl");
    ncs = await Promise.all([connect({ servers }), connect({ servers })]);
    responder = createResponder(
      billing,
      {
        ...billingHandlers,
        // A span the handler starts itself joins the caller's trace.
        echo: ({ text }) => {
          otel.trace.getTracer("app").startSpan("db.query").end();
          return { text };
        },
      },
      { transport: natsTransport(ncs[0] as NatsConnection), use: [responderTracing(otel)] },
    );
    await responder.start();
  });
  afterAll(async () => {
    await responder.stop();
    await Promise.all(ncs.map((nc) => nc.close()));
    otel.trace.disable();
    otel.context.disable();
    otel.propagation.disable();
  });

  it("records client and server spans in one trace, parent to child, with the handler's span inside", async () => {
    const client = createClient(billing, {
      transport: natsTransport(ncs[1] as NatsConnection),
      use: [clientTracing(otel)],
    });
    await client.echo({ text: "traced" }, { id: "trace-1" });
    await client.close();
    const spans = exporter.getFinishedSpans();
    const clientSpan = spans.find(
      (s) => s.kind === otel.SpanKind.CLIENT && s.attributes["messaging.message.id"] === "trace-1",
    );
    const serverSpan = spans.find(
      (s) => s.kind === otel.SpanKind.SERVER && s.attributes["messaging.message.id"] === "trace-1",
    );
    const dbSpan = spans.find((s) => s.name === "db.query");
    expect(clientSpan?.name).toBe("billing/echo");
    expect(clientSpan?.attributes).toMatchObject({
      "rpc.system": "ricochet",
      "rpc.service": "billing",
      "rpc.method": "echo",
      "rpc.ricochet.code": "OK",
    });
    expect(serverSpan?.attributes).toMatchObject({
      "rpc.method": "echo",
      "rpc.ricochet.attempt": 1,
      "rpc.ricochet.code": "OK",
    });
    const traceId = clientSpan?.spanContext().traceId;
    expect(serverSpan?.spanContext().traceId).toBe(traceId);
    expect(serverSpan?.parentSpanContext?.spanId).toBe(clientSpan?.spanContext().spanId);
    expect(dbSpan?.spanContext().traceId).toBe(traceId);
    expect(dbSpan?.parentSpanContext?.spanId).toBe(serverSpan?.spanContext().spanId);
  });

  it("marks both spans with the outcome code when the call fails", async () => {
    exporter.reset();
    const client = createClient(billing, {
      transport: natsTransport(ncs[1] as NatsConnection),
      use: [clientTracing(otel)],
    });
    expect(
      (await rejection(client.charge({ accountId: "a", amountCents: 500 }, { id: "trace-2" })))
        .code,
    ).toBe("INSUFFICIENT_FUNDS");
    await client.close();
    const spans = exporter
      .getFinishedSpans()
      .filter((s) => s.attributes["messaging.message.id"] === "trace-2");
    expect(
      spans.map((s) => [s.kind, s.attributes["rpc.ricochet.code"], s.status.code]).sort(),
    ).toEqual(
      [
        [otel.SpanKind.CLIENT, "INSUFFICIENT_FUNDS", otel.SpanStatusCode.ERROR],
        [otel.SpanKind.SERVER, "INSUFFICIENT_FUNDS", otel.SpanStatusCode.ERROR],
      ].sort(),
    );
  });

  it("sends a traced call with its headers (traceparent needs them), not as a compact call", async () => {
    const nc = ncs[1] as NatsConnection;
    const seen = deferred<Msg>();
    const sub = nc.subscribe("billing.echo", { max: 1, callback: (_err, m) => seen.resolve(m) });
    await nc.flush();
    const client = createClient(billing, {
      transport: natsTransport(nc),
      use: [clientTracing(otel)],
    });
    try {
      await client.echo({ text: "traced" }, { id: "trace-3" });
    } finally {
      await client.close();
    }
    const m = await seen.promise;
    sub.unsubscribe();
    expect(m.headers?.get("traceparent")).toMatch(/^00-[0-9a-f]{32}-/);
    expect(m.headers?.get("Nats-Msg-Id")).toBe("trace-3");
    expect(parseCallToken(m.reply ?? "")).toBeUndefined();
  });
});
