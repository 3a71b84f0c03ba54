/**
 * A durable responder in a process of its own, for tests that SIGKILL it. It serves `billing` from the
 * JetStream queue with kvDedupe on the given bucket, and reports what it does on `effects.*.<id>`:
 *
 * - mode `handler`: its `charge` handler reports `started`, then works until the process is killed.
 * - mode `ack`: its handler reports `started` and `done` (the side effect) and returns; the reply is
 *   stored and sent, then the command's ack is held back (reported as `acking`) until the kill.
 *
 *   node --import tsx test/support/durable-responder-process.ts <natsUrl> <bucket> <mode>
 */
import { jetstream } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { connect } from "@nats-io/transport-node";
import { kvDedupe } from "../../src/dedupe/kv.js";
import { createResponder } from "../../src/responder.js";
import { jetstreamQueue } from "../../src/transport/jetstream.js";
import { natsTransport } from "../../src/transport/nats.js";
import type { DurableQueue } from "../../src/transport/queue.js";
import { billing, billingHandlers } from "../fixtures/billing.js";

const [servers, bucket, mode] = process.argv.slice(2);
const nc = await connect({ servers: servers as string });
const kv = await new Kvm(nc).open(bucket as string);
const queue = jetstreamQueue(jetstream(nc), { ackWaitMs: 1000, retryDelayMs: 0 });

/** The same queue, except that in mode `ack` a command's ack is reported and never sent. */
const held: DurableQueue = {
  maxDeliver: queue.maxDeliver,
  transientForMs: queue.transientForMs,
  retryDelayMs: queue.retryDelayMs,
  enqueue: (...args) => queue.enqueue(...args),
  consume: (service, onCommand, options) =>
    queue.consume(
      service,
      (command) =>
        onCommand(
          mode === "ack"
            ? new Proxy(command, {
                get(target, key) {
                  if (key === "ack")
                    return () => nc.publish(`effects.acking.${target.header("Nats-Msg-Id")}`);
                  const value = Reflect.get(target, key, target) as unknown;
                  return typeof value === "function" ? value.bind(target) : value;
                },
              })
            : command,
        ),
      options,
    ),
};

const responder = createResponder(
  billing,
  {
    ...billingHandlers,
    charge: async (req, ctx) => {
      nc.publish(`effects.started.${ctx.id}`, String(process.pid));
      if (mode === "handler") await new Promise(() => undefined); // killed before it ever finishes
      nc.publish(`effects.done.${ctx.id}`, String(process.pid));
      return { chargeId: `ch_${process.pid}`, balanceCents: 100 - req.amountCents };
    },
  },
  {
    transport: natsTransport(nc),
    dedupe: kvDedupe(kv, { ttlMs: 60_000, leaseMs: 500 }),
    durable: held satisfies DurableQueue,
    discovery: false,
  },
);
await responder.start();
process.stdout.write("ready\n");
