// Peer: moleculer 0.14.36 with its NATS transporter (nats 2.x), a caller broker and a service broker.
// 0.14.36 is the newest moleculer that runs on Node 20 (0.15 declares engines node >= 22). `respond`
// is the payload set's handler (bench/payload.ts), so it answers the same bodies as every other impl.
// Plain JS beside its own node_modules (bench/peers), outside the project's typecheck and install.
import { ServiceBroker } from "moleculer";

export async function create(servers, respond, gate) {
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
        return respond(ctx.params);
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
