/** ricochet over core NATS: validation on both sides, optionally a memory dedupe store. */
import { connect } from "@nats-io/transport-node";
import {
  createClient,
  createResponder,
  defineContract,
  memoryDedupe,
  method,
  natsTransport,
} from "ricochet";
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
        dedupe: dedupe ? memoryDedupe({ maxEntries: Number(process.env.DEDUPE_MAX ?? 10_000) }) : false,
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

export const create = factory(false);
export const createWithDedupe = factory(true);
