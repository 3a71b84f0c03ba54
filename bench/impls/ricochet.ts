/** ricochet over core NATS: validation on both sides, with or without its default memory dedupe store. */
import { connect } from "@nats-io/transport-node";
import { createClient, createResponder, defineContract, method, natsTransport } from "ricochet";
import { makeResponse, requestSchema, responseSchema } from "../payload.js";
import { createGate } from "./gate.js";
import type { ImplFactory } from "./types.js";

const contract = defineContract({
  service: "bench",
  version: "1.0.0",
  methods: { charge: method({ request: requestSchema, response: responseSchema }) },
});

function factory(dedupe: boolean): ImplFactory {
  return async (servers) => {
    const [server, client] = await Promise.all([connect({ servers }), connect({ servers })]);
    const gate = createGate();
    const responder = createResponder(
      contract,
      {
        charge: async (req) => {
          const held = gate.pass();
          if (held) await held;
          return makeResponse(req);
        },
      },
      {
        transport: natsTransport(server),
        concurrency: 20_000,
        maxQueue: 20_000,
        // The default is memoryDedupe() with its default bounds; `false` measures the path without it.
        ...(dedupe ? {} : { dedupe: false as const }),
      },
    );
    await responder.start();
    const rpc = createClient(contract, { transport: natsTransport(client), timeoutMs: 60_000 });
    return {
      call: (req) => rpc.charge(req as Parameters<typeof rpc.charge>[0]),
      hold: gate.hold,
      release: gate.release,
      arrived: () => gate.arrived,
      close: async () => {
        await rpc.close();
        await responder.stop();
        await Promise.all([client.close(), server.close()]);
      },
    };
  };
}

/** ricochet as configured by default: validation on both sides, memoryDedupe(). */
export const create = factory(true);
/** ricochet with `dedupe: false`: validation only. */
export const createWithoutDedupe = factory(false);
