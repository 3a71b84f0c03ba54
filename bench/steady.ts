/**
 * One implementation at a steady load, second by second: calls/s and CPU µs per call for each of N
 * windows, in this process, against the nats-server at <servers>. Shows how a process settles after
 * start (the JIT, the heap) and whether it stays settled, which the bench's short windows cannot.
 *
 *   npm run build && npx tsx --tsconfig bench/tsconfig.json bench/steady.ts \
 *     <handwritten|ricochet|nodedupe|kv|nat> nats://127.0.0.1:4222 [nested] [windows 8] [ms 1000] [inflight 64]
 *
 * Add `node --trace-gc-nvp` (run it as `node --trace-gc-nvp --import tsx bench/steady.ts …`) to see
 * each young collection's `promoted=` bytes: docs/performance.md, "Garbage that does not die young".
 */
import { performance } from "node:perf_hooks";
import { create as handwritten } from "./impls/handwritten.js";
import { createNoAsyncTraces } from "./impls/nats-request.js";
import { createWithKvDedupe, createWithoutDedupe, create as ricochet } from "./impls/ricochet.js";
import type { ImplFactory } from "./impls/types.js";
import { getPayloadSet } from "./payload.js";

const factories: Record<string, ImplFactory> = {
  handwritten,
  ricochet,
  nodedupe: createWithoutDedupe,
  kv: createWithKvDedupe,
  nat: createNoAsyncTraces,
};
const [name = "", servers, payloadName = "nested", windows = "8", ms = "1000", inflight = "64"] =
  process.argv.slice(2);
const factory = factories[name];
if (factory === undefined || servers === undefined) {
  throw new Error(
    `usage: steady.ts <${Object.keys(factories).join("|")}> <servers> [payload] [windows] [ms] [inflight]`,
  );
}
const payload = getPayloadSet(payloadName);
const impl = await factory(servers, payload);
const req = payload.makeRequest();
const rates: number[] = [];
const cpus: number[] = [];
for (let w = 0; w < Number(windows); w++) {
  let done = 0;
  const until = performance.now() + Number(ms);
  const t0 = performance.now();
  const cpu0 = process.cpuUsage();
  await Promise.all(
    Array.from({ length: Number(inflight) }, async () => {
      while (performance.now() < until) {
        await impl.call(req);
        done++;
      }
    }),
  );
  const cpu = process.cpuUsage(cpu0);
  rates.push(done / ((performance.now() - t0) / 1000));
  cpus.push((cpu.user + cpu.system) / done);
}
await impl.close();
console.log(
  `${name} ${payloadName}: calls/s ${rates.map((r) => Math.round(r)).join(" ")} | CPU µs/call ${cpus.map((c) => c.toFixed(1)).join(" ")}`,
);
