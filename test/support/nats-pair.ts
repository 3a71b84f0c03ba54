/** Two NATS connections to the test server, as the two endpoints the shared suites need. */
import { connect } from "@nats-io/transport-node";
import { inject } from "vitest";
import { natsTransport } from "../../src/transport/nats.js";
import type { TransportPair } from "../transport.suite.js";

export async function natsPair(): Promise<TransportPair> {
  const servers = inject("natsUrl");
  const [ncA, ncB] = await Promise.all([connect({ servers }), connect({ servers })]);
  return {
    a: natsTransport(ncA),
    b: natsTransport(ncB),
    close: async () => {
      await Promise.all([ncA.close(), ncB.close()]);
    },
  };
}
