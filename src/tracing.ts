/**
 * OpenTelemetry tracing, built as middleware: a CLIENT span around each call that injects W3C
 * `traceparent`/`tracestate` into its headers, and a SERVER span around each handler, started in the
 * context the caller sent, so the handler's own spans join the caller's trace.
 *
 * `@opentelemetry/api` is an optional peer dependency: pass the module in, so ricochet itself never
 * loads it.
 *
 * @module
 */
import type * as Otel from "@opentelemetry/api";
import type { CallContext } from "./context.js";
import { isRpcError } from "./errors.js";
import type { ClientMiddleware, ResponderMiddleware } from "./middleware.js";

/**
 * The `@opentelemetry/api` module: pass the module itself (`import * as otel from
 * "@opentelemetry/api"`). Typed by shape only, so ricochet's published types never import the
 * optional peer: a project without it still type-checks.
 */
export interface OtelApi {
  readonly trace: object;
  readonly context: object;
  readonly propagation: object;
  readonly SpanKind: object;
  readonly SpanStatusCode: object;
  readonly ROOT_CONTEXT: object;
}

/** The parts of `@opentelemetry/api` the middleware uses, with their real types (internal). */
type Otel_ = Pick<
  typeof Otel,
  "trace" | "context" | "propagation" | "SpanKind" | "SpanStatusCode" | "ROOT_CONTEXT"
>;

/** Options for {@link clientTracing} and {@link responderTracing}. */
export interface TracingOptions {
  /** The tracer name. @default "ricochet" */
  tracerName?: string;
}

const SYSTEM = "ricochet";

/** The outcome code of a call for the `rpc.ricochet.code` attribute: `OK`, or the error's code. */
function codeOf(err: unknown): string {
  return isRpcError(err) ? err.code : "INTERNAL";
}

/** Runs `next`, records its outcome on `span` (code attribute, ERROR status), and ends the span. */
async function settleSpan(
  otel: Otel_,
  span: Otel.Span,
  next: () => Promise<unknown>,
): Promise<unknown> {
  try {
    const value = await next();
    span.setAttribute("rpc.ricochet.code", "OK");
    return value;
  } catch (err) {
    span.setAttribute("rpc.ricochet.code", codeOf(err));
    span.setStatus({
      code: otel.SpanStatusCode.ERROR,
      message: err instanceof Error ? err.message : String(err),
    });
    throw err;
  } finally {
    span.end();
  }
}

/**
 * Client middleware that records a CLIENT span per call (name `<service>/<method>`; attributes
 * `rpc.system`, `rpc.service`, `rpc.method`, `messaging.destination.name`, `messaging.message.id` and
 * `rpc.ricochet.code`) and
 * propagates its context in the call's headers.
 *
 * @example
 * import * as otel from "@opentelemetry/api";
 * createClient(billing, { transport, use: [clientTracing(otel)] });
 */
export function clientTracing(api: OtelApi, options: TracingOptions = {}): ClientMiddleware {
  const otel = api as Otel_;
  const tracer = otel.trace.getTracer(options.tracerName ?? SYSTEM);
  return (call, next) =>
    tracer.startActiveSpan(
      `${call.service}/${call.method}`,
      {
        kind: otel.SpanKind.CLIENT,
        attributes: {
          "rpc.system": SYSTEM,
          "rpc.service": call.service,
          "rpc.method": call.method,
          "messaging.destination.name": call.subject,
          "messaging.message.id": call.id,
        },
      },
      (span) => {
        otel.propagation.inject(otel.context.active(), call.headers);
        return settleSpan(otel, span, next);
      },
    );
}

/**
 * Responder middleware that records a SERVER span per handled call, as a child of the caller's span
 * when the request carried `traceparent`, and runs the handler inside it (so spans the handler starts
 * join the trace; this needs a context manager, which the OpenTelemetry Node SDK registers).
 * Attributes: `rpc.system`, `rpc.service`, `rpc.method`, `messaging.message.id`, `rpc.ricochet.attempt`,
 * `rpc.ricochet.code`.
 *
 * @example
 * import * as otel from "@opentelemetry/api";
 * createResponder(billing, handlers, { transport, use: [responderTracing(otel)] });
 */
export function responderTracing(api: OtelApi, options: TracingOptions = {}): ResponderMiddleware {
  const otel = api as Otel_;
  const tracer = otel.trace.getTracer(options.tracerName ?? SYSTEM);
  return (ctx: CallContext, _request, next) => {
    const parent = otel.propagation.extract(otel.ROOT_CONTEXT, ctx.headers);
    const service = ctx.service;
    return tracer.startActiveSpan(
      `${service}/${ctx.method}`,
      {
        kind: otel.SpanKind.SERVER,
        attributes: {
          "rpc.system": SYSTEM,
          "rpc.service": service,
          "rpc.method": ctx.method,
          "messaging.message.id": ctx.id,
          "rpc.ricochet.attempt": ctx.attempt,
        },
      },
      parent,
      (span) => settleSpan(otel, span, next),
    );
  };
}
