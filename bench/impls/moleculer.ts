/** Peer: moleculer with its NATS transporter; installed on demand in bench/peers (see run.ts). */
import { makeResponse } from "../payload.js";
import { createGate } from "./gate.js";
import type { Impl, ImplFactory } from "./types.js";

type PeerFactory = (
  servers: string,
  respond: typeof makeResponse,
  gate: ReturnType<typeof createGate>,
) => Promise<Impl>;

export const create: ImplFactory = async (servers) => {
  const peer = (await import(new URL("../peers/moleculer.mjs", import.meta.url).href)) as {
    create: PeerFactory;
  };
  return peer.create(servers, makeResponse, createGate());
};
