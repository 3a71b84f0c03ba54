/** Peer: a `@nats-io/services` (NATS micro) endpoint, called with `nc.request()` as its docs show. */

import { Svcm } from "@nats-io/services";
import { connect } from "@nats-io/transport-node";
import { createGate, requestJson, respondJson } from "./gate.js";
import type { ImplFactory } from "./types.js";

export const create: ImplFactory = async (servers, payload) => {
  const [server, client] = await Promise.all([connect({ servers }), connect({ servers })]);
  const gate = createGate();
  const service = await new Svcm(server).add({ name: "bench", version: "1.0.0" });
  service.addEndpoint("charge", {
    subject: "bench.charge",
    handler: (_err, msg) => respondJson(gate, msg, payload.respond),
  });
  await server.flush();
  return {
    call: requestJson(client),
    ...gate.controls(),
    close: async () => {
      await service.stop();
      await Promise.all([client.close(), server.close()]);
    },
  };
};
