/**
 * The chaos client, in a process of its own: connected to node 1 first, it starts `rate` calls a
 * second for `seconds` (at most `maxInFlight` in flight), each with its own id (`<idPrefix>-<n>`),
 * the client's default retries and a deadline of `timeoutMs`; durable calls in `durable` mode. It
 * writes one record per call (see `CallRecord`): its outcome and latency once it settles, or
 * `settled: false` if it has not settled by its deadline plus `graceMs`. It then prints
 * `{"event":"done"}` and exits by itself.
 *
 * It connects and prints `{"event":"ready"}`, then waits for the line `go` on stdin (the parent sends
 * it once the responders are ready) before it starts the load and prints `{"event":"started"}`.
 *
 *   node --import tsx scripts/chaos/client.ts '<ClientConfig as JSON>'
 */
import { createInterface } from "node:readline";
import { jetstream } from "@nats-io/jetstream";
import { createClient, isRpcError, jetstreamQueue, natsTransport } from "../../src/index.js";
import type { ClientConfig } from "./config.js";
import { connectChaos } from "./connection.js";
import { chaos } from "./contract.js";
import { appendCall, emit } from "./records.js";

const config = JSON.parse(process.argv[2] ?? "") as ClientConfig;
const { timings } = config;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

const nc = await connectChaos(config.servers, `chaos-${config.mode}-client`);
const transport = natsTransport(nc);
const client = createClient(chaos, {
  transport,
  timeoutMs: timings.timeoutMs,
  ...(config.mode === "durable"
    ? {
        durable: {
          queue: jetstreamQueue(jetstream(nc), { replicas: 3, ackWaitMs: timings.ackWaitMs }),
          methods: ["work"] as const,
        },
      }
    : {}),
});
emit({ event: "ready", pid: process.pid });
await new Promise<void>((resolve, reject) => {
  const input = createInterface({ input: process.stdin });
  input.on("line", (line) => {
    if (line.trim() !== "go") return;
    resolve();
    input.close();
  });
  input.once("close", () => reject(new Error("stdin closed before go")));
});

let inFlight = 0;
let unsettled = 0;
let made = 0;
let throttled = 0;
let loadOver = false;
/** Wakes the load loop when it waits for a free slot. */
let wake: (() => void) | undefined;
let resolveAll: () => void = () => undefined;
const allSettled = new Promise<void>((resolve) => {
  resolveAll = resolve;
});
const checkAll = () => {
  if (loadOver && inFlight === 0) resolveAll();
};

/** A call is no longer in flight (settled, or given up on after its grace). */
const release = () => {
  inFlight--;
  wake?.();
  checkAll();
};

/** Starts call number `n`. */
const call = (n: number) => {
  const id = `${config.idPrefix}-${n}`;
  const t = Date.now();
  const t0 = performance.now();
  let gaveUp = false;
  inFlight++;
  made++;
  appendCall(config.callsFile, { id, t, started: true });
  const grace = setTimeout(() => {
    gaveUp = true;
    unsettled++;
    appendCall(config.callsFile, { id, t, settled: false });
    release();
  }, timings.timeoutMs + timings.graceMs);
  const settle = (outcome: string) => {
    const ms = Math.round(performance.now() - t0);
    if (gaveUp) {
      appendCall(config.callsFile, { id, late: true, ms, outcome });
      return;
    }
    clearTimeout(grace);
    appendCall(config.callsFile, { id, t, settled: true, ms, outcome });
    release();
  };
  // Through a promise: a call that throws at once is an outcome too.
  Promise.resolve()
    .then(() => client.work({ n }, { id }))
    .then(
      () => settle("ok"),
      (err: unknown) =>
        settle(isRpcError(err) ? err.code : `THROWN_${(err as Error)?.name ?? "unknown"}`),
    );
};

const start = Date.now();
const end = start + config.seconds * 1_000;
const total = Math.floor(config.rate * config.seconds);
const interval = 1_000 / config.rate;
emit({ event: "started", at: start });
let next = start;
for (let n = 0; n < total && Date.now() < end; n++) {
  // A steady rate: it catches up on at most 250 ms it fell behind (timers, a busy CPU), never with a
  // burst of everything it missed while it waited for a free slot.
  next = Math.max(next + interval, Date.now() - 250);
  if (next > Date.now()) await sleep(next - Date.now());
  if (inFlight >= config.maxInFlight) {
    throttled++;
    while (inFlight >= config.maxInFlight && Date.now() < end) {
      await new Promise<void>((resolve) => {
        wake = resolve;
      });
    }
    wake = undefined;
    if (Date.now() >= end) break;
  }
  call(n);
}
loadOver = true;
checkAll();
await allSettled;
emit({ event: "done", made, throttled, unsettled });
await Promise.race([client.close(), sleep(2_000)]);
await Promise.race([nc.close(), sleep(2_000)]);
process.exit(0);
