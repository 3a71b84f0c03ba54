/**
 * Observability: structured logs through your pino logger, middleware, OpenTelemetry spans,
 * and metrics exported to Prometheus. Runs in-process.
 *
 *   npx tsx examples/03-observability.ts
 */
import * as otel from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { W3CTraceContextPropagator } from "@opentelemetry/core";
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  SimpleSpanProcessor,
} from "@opentelemetry/sdk-trace-base";
import { pino } from "pino";
import * as prom from "prom-client";
import {
  type ClientMiddleware,
  clientTracing,
  createClient,
  createMetrics,
  createResponder,
  defineContract,
  memoryTransport,
  method,
  responderTracing,
} from "ricochet";
import { z } from "zod";

const greeter = defineContract({
  service: "greeter",
  version: "1.0.0",
  methods: {
    hello: method({
      request: z.object({ name: z.string() }),
      response: z.object({ greeting: z.string() }),
    }),
  },
});

// OpenTelemetry: normally the Node SDK does this; spans go to memory here so we can print them.
const spans = new InMemorySpanExporter();
otel.trace.setGlobalTracerProvider(
  new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(spans)] }),
);
otel.context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
otel.propagation.setGlobalPropagator(new W3CTraceContextPropagator());

// Metrics, exported in the Prometheus text format.
const registry = new prom.Registry();
const metrics = createMetrics();
metrics.registerPrometheus(prom, registry);

// Logs: your logger, at the level you choose; ricochet logs through child loggers of it.
const logger = pino({ level: "warn" });

// A middleware of your own: an auth header on every call.
const auth: ClientMiddleware = (call, next) => {
  call.headers.Authorization = "Bearer demo";
  return next();
};

const transport = memoryTransport();
const responder = createResponder(
  greeter,
  {
    hello: ({ name }, ctx) => {
      if (ctx.headers.Authorization !== "Bearer demo") throw new Error("unauthenticated");
      return { greeting: `hello, ${name}` };
    },
  },
  {
    transport,
    logger,
    use: [responderTracing(otel), ...metrics.responder.use],
    onDuplicate: metrics.responder.onDuplicate,
  },
);
await responder.start();

const client = createClient(greeter, {
  transport,
  logger,
  use: [clientTracing(otel), auth, ...metrics.client.use],
  onRetry: metrics.client.onRetry,
});
console.log((await client.hello({ name: "ada" })).greeting);

const finished = spans.getFinishedSpans();
const traces = new Set(finished.map((s) => s.spanContext().traceId));
console.log(
  `spans: ${finished.map((s) => `${s.name} (${otel.SpanKind[s.kind]})`).join(", ")}; traces: ${traces.size}`,
);
const text = await registry.metrics();
console.log(text.split("\n").find((l) => l.startsWith('ricochet_calls_total{side="responder"')));

await client.close();
await responder.stop();
await transport.close();
