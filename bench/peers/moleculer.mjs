// Peer: moleculer 0.14 with its NATS transporter (nats 2.x), a caller broker and a service broker.
// Plain JS beside its own node_modules (bench/peers), outside the project's typecheck and install.
import { ServiceBroker } from "moleculer";

export async function create(servers, makeResponse, gate) {
  const options = (nodeID) => ({
    nodeID,
    transporter: { type: "NATS", options: { servers: [servers] } },
    logger: false,
    requestTimeout: 60_000,
  });
  const server = new ServiceBroker(options(`bench-server-${process.pid}`));
  const client = new ServiceBroker(options(`bench-client-${process.pid}`));
  server.createService({
    name: "bench",
    actions: {
      charge: async (ctx) => {
        const held = gate.pass();
        if (held) await held;
        return makeResponse(ctx.params);
      },
    },
  });
  await Promise.all([server.start(), client.start()]);
  await client.waitForServices(["bench"]);
  return {
    call: (req) => client.call("bench.charge", req),
    ...gate.controls(),
    close: async () => {
      await client.stop();
      await server.stop();
    },
  };
}
