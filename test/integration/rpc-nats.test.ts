import { connect } from "@nats-io/transport-node";
import { inject } from "vitest";
import { natsTransport } from "../../src/transport/nats.js";
import { rpcSuite } from "../rpc.suite.js";

rpcSuite("nats", async () => {
  const servers = inject("natsUrl");
  const [ncA, ncB] = await Promise.all([connect({ servers }), connect({ servers })]);
  return {
    a: natsTransport(ncA),
    b: natsTransport(ncB),
    close: async () => {
      await Promise.all([ncA.close(), ncB.close()]);
    },
  };
});
