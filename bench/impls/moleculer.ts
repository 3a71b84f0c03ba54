/**
 * Peer: moleculer 0.14.36 with its NATS transporter; installed on demand in bench/peers (see run.ts).
 * 0.14.36 is the newest moleculer that runs on Node 20: 0.15 requires Node >= 22 (its `engines`).
 */
import { createGate } from "./gate.js";
import type { Impl, ImplFactory } from "./types.js";

type PeerFactory = (
  servers: string,
  respond: (req: unknown) => unknown,
  gate: ReturnType<typeof createGate>,
) => Promise<Impl>;

export const create: ImplFactory = async (servers, payload) => {
  const peer = (await import(new URL("../peers/moleculer.mjs", import.meta.url).href)) as {
    create: PeerFactory;
  };
  return peer.create(servers, payload.respond, createGate());
};
