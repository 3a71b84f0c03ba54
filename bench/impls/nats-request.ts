/**
 * Baseline: nats.js v3 `nc.request()` against a queue-group subscriber, hand-written JSON; as the
 * client connects by default, or with `noAsyncTraces: true` (no `RequestError` built per request to
 * carry the caller's stack, see nats-core's `request()`).
 */
import { connect } from "@nats-io/transport-node";
import { createGate, requestJson, serveJson } from "./gate.js";
import type { ImplFactory } from "./types.js";

function factory(noAsyncTraces: boolean): ImplFactory {
  return async (servers, payload) => {
    const [server, client] = await Promise.all([
      connect({ servers }),
      connect(noAsyncTraces ? { servers, noAsyncTraces: true } : { servers }),
    ]);
    const gate = createGate();
    serveJson(server, gate, payload.respond);
    await server.flush();
    return {
      call: requestJson(client),
      ...gate.controls(),
      close: async () => {
        await Promise.all([client.close(), server.close()]);
      },
    };
  };
}

/** `nc.request()` on a connection with the default options. */
export const create = factory(false);
/** `nc.request()` on a connection made with `noAsyncTraces: true`. */
export const createNoAsyncTraces = factory(true);
