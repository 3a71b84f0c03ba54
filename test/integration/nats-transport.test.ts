import { connect } from "@nats-io/transport-node";
import { inject } from "vitest";
import { natsTransport } from "../../src/transport/nats.js";
import { transportSuite } from "../transport.suite.js";

transportSuite("nats", async () => {
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
