/**
 * A responder in a process of its own that holds its calls, for tests that SIGKILL it while a caller
 * waits: serves `billing` with the default `memoryDedupe()` (store `memory`) or with kvDedupe on the
 * given bucket; its `charge` handler reports `effects.started.<id>` (payload: `<pid> <instance id>`,
 * the id its progress messages carry) and then never finishes, so the responder keeps sending
 * progress messages until the process is killed. It would report `effects.done.<id>` if it finished.
 *
 *   node --import tsx test/support/slow-responder-process.ts <natsUrl> memory
 *   node --import tsx test/support/slow-responder-process.ts <natsUrl> <bucket> <leaseMs>
 *
 * Prints `ready` once it serves.
 */
import { Kvm } from "@nats-io/kv";
import { connect } from "@nats-io/transport-node";
import { kvDedupe } from "../../src/dedupe/kv.js";
import { createResponder } from "../../src/responder.js";
import { natsTransport } from "../../src/transport/nats.js";
import { billing, billingHandlers } from "../fixtures/billing.js";

const [servers, store, lease] = process.argv.slice(2);
const nc = await connect({ servers: servers as string });
const dedupe =
  store === undefined || store === "memory"
    ? undefined
    : kvDedupe(await new Kvm(nc).open(store), { ttlMs: 60_000, leaseMs: Number(lease ?? 1000) });
const responder = createResponder(
  billing,
  {
    ...billingHandlers,
    charge: async (req, ctx) => {
      nc.publish(`effects.started.${ctx.id}`, `${process.pid} ${responder.id}`);
      await new Promise(() => undefined); // killed before it ever finishes
      nc.publish(`effects.done.${ctx.id}`, String(process.pid));
      return { chargeId: `ch_${process.pid}`, balanceCents: 100 - req.amountCents };
    },
  },
  { transport: natsTransport(nc), ...(dedupe ? { dedupe } : {}) },
);
await responder.start();
process.stdout.write("ready\n");
