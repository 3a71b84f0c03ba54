/**
 * Every implementation the bench measures, by the name `--only` and bench/steady.ts take. The peer
 * frameworks are imported only when asked for (moleculer is installed on demand in bench/peers).
 */
import { createWithZod, create as handwritten } from "./handwritten.js";
import { createNoAsyncTraces, create as natsRequest } from "./nats-request.js";
import {
  createDurable,
  createWithKvDedupe,
  createWithoutDedupe,
  create as ricochet,
} from "./ricochet.js";
import type { ImplFactory } from "./types.js";

export const factories: Record<string, () => Promise<ImplFactory>> = {
  "nats-request": async () => natsRequest,
  "nats-request-noasynctraces": async () => createNoAsyncTraces,
  handwritten: async () => handwritten,
  "handwritten-zod": async () => createWithZod,
  ricochet: async () => ricochet,
  "ricochet-nodedupe": async () => createWithoutDedupe,
  "ricochet-kv": async () => createWithKvDedupe,
  "ricochet-durable": async () => createDurable,
  services: async () => (await import("./services.js")).create,
  moleculer: async () => (await import("./moleculer.js")).create,
};
