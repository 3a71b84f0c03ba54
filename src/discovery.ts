/**
 * The NATS micro discovery protocol (ADR-32): a responder answers `$SRV.PING`, `$SRV.INFO` and
 * `$SRV.STATS` (plain, `.<name>` and `.<name>.<id>`) with the micro v1 JSON documents, so `nats micro`,
 * `@nats-io/services` clients and Go's `micro` package list it. Wire JSON keeps the protocol's
 * snake_case; only this file converts.
 *
 * Implemented here rather than on `@nats-io/services`: that package calls handlers without awaiting
 * them, so its statistics miss the time and failures of async handlers; ricochet records each call
 * when its reply goes out.
 *
 * @module
 */
import type { Logger } from "pino";
import { type $ZodType, toJSONSchema } from "zod/v4/core";
import type { AnyContract } from "./contract.js";
import { encodeBody } from "./protocol.js";
import type { Transport, TransportMessage, TransportSubscription } from "./transport/types.js";

/** The subject prefix of the micro protocol. */
export const SRV_PREFIX = "$SRV";

/** The three verbs. */
export const VERBS = ["PING", "INFO", "STATS"] as const;

/** The control subjects a service answers for `verb`: plain, by name, by name and id. */
export function controlSubjects(verb: (typeof VERBS)[number], name: string, id: string): string[] {
  return [
    `${SRV_PREFIX}.${verb}`,
    `${SRV_PREFIX}.${verb}.${name}`,
    `${SRV_PREFIX}.${verb}.${name}.${id}`,
  ];
}

/** Running totals for one method, as `$SRV.STATS` reports them. */
export class EndpointStats {
  requests = 0;
  errors = 0;
  lastError = "";
  /** Total time from receipt to reply, in nanoseconds. */
  processingNs = 0;

  /** Counts one call that was answered `durationMs` after it arrived, with an error or not. */
  record(durationMs: number, error?: { status: number; message: string }): void {
    this.requests++;
    this.processingNs += Math.round(durationMs * 1e6);
    if (error) {
      this.errors++;
      this.lastError = `${error.status}:${error.message}`;
    }
  }
}

/** A method as discovery shows it. */
interface Endpoint {
  name: string;
  subject: string;
  queue_group: string;
  metadata: Record<string, string>;
}

function schemaOf(schema: $ZodType, io: "input" | "output"): string {
  try {
    return JSON.stringify(toJSONSchema(schema, { io, unrepresentable: "any" }));
  } catch {
    // A schema zod cannot describe still gets served; discovery then says so instead of failing.
    return JSON.stringify({ description: "not representable as JSON Schema" });
  }
}

/** The endpoints of a contract, with request, response and error schemas in their metadata. */
export function endpointsOf(
  contract: AnyContract,
  queue: string,
  subjectOf: (method: string) => string,
): Endpoint[] {
  return Object.entries(contract.methods).map(([name, m]) => {
    const errors = Object.fromEntries(
      Object.entries(m.errors).map(([code, s]) => [
        code,
        JSON.parse(schemaOf(s as $ZodType, "output")),
      ]),
    );
    const metadata: Record<string, string> = {
      request_schema: schemaOf(m.request, "input"),
      response_schema: schemaOf(m.response, "output"),
      errors_schema: JSON.stringify(errors),
    };
    if (m.description) metadata.description = m.description;
    return { name, subject: subjectOf(name), queue_group: queue, metadata };
  });
}

/** Everything discovery answers with. */
export interface DiscoverySource {
  contract: AnyContract;
  id: string;
  started: Date;
  endpoints: Endpoint[];
  stats: Map<string, EndpointStats>;
  /** Whether this instance consumes the service's durable commands. */
  durable: boolean;
}

function documents(src: DiscoverySource) {
  const identity = {
    name: src.contract.service,
    id: src.id,
    version: src.contract.version,
    metadata: {
      // 2: reads call tokens (compact calls) as well as headers. See docs/protocol.md.
      "ricochet.version": "2",
      // Durable callers wait on instances that say "true" here; none means their commands just wait.
      "ricochet.durable": String(src.durable),
    } as Record<string, string>,
  };
  return {
    PING: () => ({ type: "io.nats.micro.v1.ping_response", ...identity }),
    INFO: () => ({
      type: "io.nats.micro.v1.info_response",
      ...identity,
      description: src.contract.description,
      endpoints: src.endpoints,
    }),
    STATS: () => ({
      type: "io.nats.micro.v1.stats_response",
      ...identity,
      started: src.started.toISOString(),
      endpoints: src.endpoints.map((e) => {
        const s = src.stats.get(e.name) ?? new EndpointStats();
        return {
          name: e.name,
          subject: e.subject,
          queue_group: e.queue_group,
          num_requests: s.requests,
          num_errors: s.errors,
          last_error: s.lastError,
          processing_time: s.processingNs,
          average_processing_time: s.requests === 0 ? 0 : Math.round(s.processingNs / s.requests),
        };
      }),
    }),
  };
}

/**
 * Subscribes to the control subjects (no queue group: every instance answers) and answers them.
 * Returns the subscriptions, for the responder to drain on stop. `onError` hears of subscriptions
 * the bus refused.
 */
export function serveDiscovery(
  transport: Transport,
  src: DiscoverySource,
  log: Logger,
  onError: (err: Error, subject: string) => void = () => undefined,
): TransportSubscription[] {
  const docs = documents(src);
  return VERBS.flatMap((verb) =>
    controlSubjects(verb, src.contract.service, src.id).map((subject) =>
      transport.subscribe(
        subject,
        (msg: TransportMessage) => {
          if (msg.reply === undefined) return;
          try {
            transport.publish(msg.reply, encodeBody(docs[verb]()));
          } catch (err) {
            // Never throw into the transport's delivery: a discovery answer is not worth the connection.
            log.warn({ err, subject }, "could not answer a discovery request");
          }
        },
        {
          onError: (err) => {
            log.error({ err, subject }, "discovery subscription failed");
            onError(err, subject);
          },
        },
      ),
    ),
  );
}
