/**
 * How a chaos process connects: to every node of the cluster, in the order it is given (no
 * randomising), reconnecting for ever, and reporting each disconnect and reconnect as an event.
 *
 * @module
 */
import type { NatsConnection } from "@nats-io/nats-core";
import { connect } from "@nats-io/transport-node";
import { emit } from "./records.js";

/**
 * Connects to `servers` (tried in that order) and prints a `reconnect` / `disconnect` event for
 * every such status of the connection, for as long as it lives.
 *
 * @param servers - the cluster's URLs, the preferred one first.
 * @param name - the connection's name, as the server shows it.
 */
export async function connectChaos(
  servers: readonly string[],
  name: string,
): Promise<NatsConnection> {
  const nc = await connect({
    servers: [...servers],
    name,
    noRandomize: true,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 250,
  });
  void (async () => {
    for await (const s of nc.status()) {
      if (s.type === "reconnect" || s.type === "disconnect") {
        emit({ event: s.type, server: s.server, at: Date.now() });
      }
    }
  })();
  return nc;
}
