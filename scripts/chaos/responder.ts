/**
 * A chaos responder, in a process of its own so the driver can SIGKILL, SIGSTOP and SIGCONT it. It
 * serves `chaos.work` in the service's queue group; the handler appends one effect line per
 * execution, works for `workMs`, and answers with its pid. Dedupe per mode: `kvDedupe` on the run's
 * replica-3 bucket (`core-kv`, `durable`) or the default memory store (`core-memory`); in `durable`
 * mode it also consumes the service's durable commands.
 *
 * Prints `{"event":"ready"}` once it serves, and stops (drains) on SIGTERM.
 *
 *   node --import tsx scripts/chaos/responder.ts '<ResponderConfig as JSON>'
 */
import { jetstream } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { pino } from "pino";
import {
  type Claim,
  createResponder,
  type DedupeStore,
  type DurableQueue,
  jetstreamQueue,
  type KvDedupeStore,
  kvDedupe,
  natsTransport,
  type Responder,
} from "../../src/index.js";
import { recordAnswers } from "./answers.js";
import type { ResponderConfig } from "./config.js";
import { connectChaos } from "./connection.js";
import { chaos } from "./contract.js";
import { appendAnswer, appendEffect, emit } from "./records.js";

const config = JSON.parse(process.argv[2] ?? "") as ResponderConfig;
const { mode, timings } = config;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
/** ricochet's warnings and errors (dedupe store unavailable, a reply not recorded) go to stderr. */
const logger = pino(
  { level: "warn", base: { pid: process.pid, name: config.name } },
  pino.destination({ dest: 2, sync: true }),
);

const nc = await connectChaos(config.servers, `chaos-${mode}-${config.name}`);
const answers = recordAnswers(natsTransport(nc), (id, code) =>
  appendAnswer(config.answersFile, { mode, id, pid: process.pid, at: Date.now(), code }),
);

/**
 * `store`, noting each call this instance recorded as finished ("recorded" in the answers file): the
 * report tells a re-run after a kill (the process died before its result was recorded) from a
 * duplicate by it. ricochet may answer a call before its record lands when the store is slow.
 */
function recording(store: DedupeStore): DedupeStore {
  const note = (id: string) =>
    appendAnswer(config.answersFile, {
      mode,
      id,
      pid: process.pid,
      at: Date.now(),
      code: "recorded",
    });
  const wrap = (id: string, claim: Claim): Claim =>
    claim.status !== "owner"
      ? claim
      : {
          status: "owner",
          finish: async (reply, keep) => {
            await claim.finish(reply, keep);
            note(id);
          },
        };
  return {
    claim(id, fingerprint, deadline) {
      const claim = store.claim(id, fingerprint, deadline);
      return claim instanceof Promise ? claim.then((c) => wrap(id, c)) : wrap(id, claim);
    },
  };
}

/** One attempt at building and starting the responder (JetStream may be electing a leader). */
async function start(): Promise<{ responder: Responder; store: KvDedupeStore | undefined }> {
  let store: KvDedupeStore | undefined;
  if (config.bucket !== undefined) {
    const kv = await new Kvm(nc).create(config.bucket, {
      replicas: 3,
      history: 1,
      ttl: timings.kvTtlMs,
    });
    store = kvDedupe(kv, { ttlMs: timings.kvTtlMs, leaseMs: timings.leaseMs });
  }
  let durable: DurableQueue | undefined;
  if (mode === "durable") {
    durable = answers.queue(
      jetstreamQueue(jetstream(nc), { replicas: 3, ackWaitMs: timings.ackWaitMs }),
    );
  }
  const dedupe: DedupeStore | undefined = store === undefined ? undefined : recording(store);
  const responder = createResponder(
    chaos,
    {
      work: async (_req, ctx) => {
        appendEffect(config.effectsFile, { mode, id: ctx.id, pid: process.pid, at: Date.now() });
        await sleep(timings.workMs);
        return { pid: process.pid };
      },
    },
    {
      transport: answers.transport,
      logger,
      discovery: false,
      ...(dedupe === undefined ? {} : { dedupe }),
      ...(durable === undefined ? {} : { durable }),
    },
  );
  try {
    await responder.start();
  } catch (err) {
    await responder.stop().catch(() => undefined);
    store?.close();
    throw err;
  }
  return { responder, store };
}

/** Starts, retrying for up to 30 s while the cluster cannot serve JetStream requests. */
async function startWithRetries() {
  const until = Date.now() + 30_000;
  for (;;) {
    try {
      return await start();
    } catch (err) {
      if (Date.now() > until) throw err;
      process.stderr.write(`${config.name}: start failed, retrying: ${(err as Error).message}\n`);
      await sleep(500);
    }
  }
}

const { responder, store } = await startWithRetries();
process.once("SIGTERM", () => {
  void (async () => {
    const t0 = Date.now();
    process.stderr.write(`${config.name}: SIGTERM: stopping (${responder.inFlight} in flight)\n`);
    await responder.stop();
    process.stderr.write(`${config.name}: stopped in ${Date.now() - t0} ms\n`);
    store?.close();
    await Promise.race([nc.drain(), sleep(2_000)]);
    process.exit(0);
  })();
});
emit({ event: "ready", pid: process.pid });
