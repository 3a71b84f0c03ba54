/**
 * A responder in a process of its own, for tests that kill it: serves `billing` with kvDedupe on the
 * given bucket; its `charge` handler announces that it started, then works "forever" (until the test
 * kills the process) before it would publish its side effect.
 *
 *   node --import tsx test/support/responder-process.ts <natsUrl> <bucket> <leaseMs>
 */
import { Kvm } from "@nats-io/kv";
import { connect } from "@nats-io/transport-node";
import { kvDedupe } from "../../src/dedupe/kv.js";
import { createResponder } from "../../src/responder.js";
import { natsTransport } from "../../src/transport/nats.js";
import { billing, billingHandlers } from "../fixtures/billing.js";

const [servers, bucket, lease] = process.argv.slice(2);
const nc = await connect({ servers: servers as string });
const kv = await new Kvm(nc).open(bucket as string);
const responder = createResponder(
  billing,
  {
    ...billingHandlers,
    charge: async (req, ctx) => {
      nc.publish(`effects.started.${ctx.id}`, String(process.pid));
      await new Promise(() => undefined); // killed before it ever finishes
      nc.publish(`effects.done.${ctx.id}`, String(process.pid));
      return { chargeId: `ch_${process.pid}`, balanceCents: 100 - req.amountCents };
    },
  },
  { transport: natsTransport(nc), dedupe: kvDedupe(kv, { ttlMs: 60_000, leaseMs: Number(lease) }) },
);
await responder.start();
process.stdout.write("ready\n");
