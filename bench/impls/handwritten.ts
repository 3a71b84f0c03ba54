/**
 * The practical ceiling: one wildcard reply subscription, a Map from reply token to pending call, and
 * `nc.publish()`. No timeouts, no validation, no headers. With zod: the same, parsing with the payload
 * set's schemas, compiled (`z.compile`) as ricochet compiles them, where ricochet parses by default
 * (the client the request it sends and the response it gets, the responder the request it gets and
 * the response it sends): the ceiling of any path that validates as ricochet's default does.
 */
import { createInbox } from "@nats-io/nats-core";
import { connect } from "@nats-io/transport-node";
import { z } from "zod";
import type { PayloadSet } from "../payload.js";
import { createGate, serveJson } from "./gate.js";
import type { ImplFactory } from "./types.js";

function factory(zod: boolean): ImplFactory {
  return async (servers, payload: PayloadSet) => {
    const [server, client] = await Promise.all([connect({ servers }), connect({ servers })]);
    const gate = createGate();
    const requestSchema = z.compile(payload.requestSchema);
    const responseSchema = z.compile(payload.responseSchema);
    const respond = zod
      ? (req: unknown) => responseSchema.parse(payload.respond(requestSchema.parse(req)))
      : payload.respond;
    serveJson(server, gate, respond);
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
          resolve(zod ? responseSchema.parse(msg.json()) : msg.json());
        }
      },
    });
    return {
      call: (req) =>
        new Promise((resolve) => {
          const token = (++seq).toString(36);
          const body = JSON.stringify(zod ? requestSchema.parse(req) : req);
          pending.set(token, resolve);
          client.publish("bench.charge", body, { reply: `${inbox}.${token}` });
        }),
      ...gate.controls(),
      close: async () => {
        await Promise.all([client.close(), server.close()]);
      },
    };
  };
}

/** The ceiling. */
export const create = factory(false);
/** The ceiling with zod's four parses a call. */
export const createWithZod = factory(true);
