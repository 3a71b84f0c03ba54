/**
 * The practical ceiling: one wildcard reply subscription, a Map from reply token to pending call, and
 * `nc.publish()`. No timeouts, no validation, no headers.
 */
import { createInbox } from "@nats-io/nats-core";
import { connect } from "@nats-io/transport-node";
import { createGate, serveJson } from "./gate.js";
import type { ImplFactory } from "./types.js";

export const create: ImplFactory = async (servers, payload) => {
  const [server, client] = await Promise.all([connect({ servers }), connect({ servers })]);
  const gate = createGate();
  serveJson(server, gate, payload.respond);
  await server.flush();
  const inbox = createInbox();
  const pending = new Map<string, (v: unknown) => void>();
  let seq = 0;
  client.subscribe(`${inbox}.*`, {
    callback: (_err, msg) => {
      const token = msg.subject.slice(inbox.length + 1);
      const resolve = pending.get(token);
      if (resolve) {
        pending.delete(token);
        resolve(msg.json());
      }
    },
  });
  return {
    call: (req) =>
      new Promise((resolve) => {
        const token = (++seq).toString(36);
        pending.set(token, resolve);
        client.publish("bench.charge", JSON.stringify(req), { reply: `${inbox}.${token}` });
      }),
    ...gate.controls(),
    close: async () => {
      await Promise.all([client.close(), server.close()]);
    },
  };
};
