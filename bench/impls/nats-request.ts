/** Baseline: nats.js v3 `nc.request()` against a queue-group subscriber, hand-written JSON. */
import { connect } from "@nats-io/transport-node";
import { makeResponse } from "../payload.js";
import { createGate, requestJson, serveJson } from "./gate.js";
import type { ImplFactory } from "./types.js";

export const create: ImplFactory = async (servers) => {
  const [server, client] = await Promise.all([connect({ servers }), connect({ servers })]);
  const gate = createGate();
  serveJson(server, gate, makeResponse);
  await server.flush();
  return {
    call: requestJson(client),
    ...gate.controls(),
    close: async () => {
      await Promise.all([client.close(), server.close()]);
    },
  };
};
