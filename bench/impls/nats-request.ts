/** Baseline: nats.js v3 `nc.request()` against a queue-group subscriber, hand-written JSON. */
import { connect } from "@nats-io/transport-node";
import { makeResponse } from "../payload.js";
import { createGate, serveJson } from "./gate.js";
import type { ImplFactory } from "./types.js";

export const create: ImplFactory = async (servers) => {
  const [server, client] = await Promise.all([connect({ servers }), connect({ servers })]);
  const gate = createGate();
  serveJson(server, gate, makeResponse);
  await server.flush();
  return {
    call: async (req) =>
      (await client.request("bench.charge", JSON.stringify(req), { timeout: 60_000 })).json(),
    hold: gate.hold,
    release: gate.release,
    arrived: () => gate.arrived,
    close: async () => {
      await Promise.all([client.close(), server.close()]);
    },
  };
};
