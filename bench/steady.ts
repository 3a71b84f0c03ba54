/**
 * One implementation at a steady load, second by second: calls/s and CPU µs per call for each of N
 * windows, in this process, against the nats-server at <servers>. Shows how a process settles after
 * start (the JIT, the heap, the dedupe store's growth) and whether it stays settled, which the
 * bench's short windows cannot.
 *
 *   npm run build && npx tsx --tsconfig bench/tsconfig.json bench/steady.ts \
 *     <implementation, as --only names it: ricochet, ricochet-nodedupe, handwritten, …> \
 *     nats://127.0.0.1:4222 [payload nested] [windows 8] [ms 1000] [inflight 64]
 *
 * Add `node --trace-gc-nvp` (run it as `node --trace-gc-nvp --import tsx bench/steady.ts …`) to see
 * each young collection's `promoted=` bytes: docs/performance.md, "Garbage that does not die young".
 */
import { factories } from "./impls/index.js";
import { closedLoop } from "./loop.js";
import { getPayloadSet } from "./payload.js";

const [name = "", servers, payloadName = "nested", windows = "8", ms = "1000", inflight = "64"] =
  process.argv.slice(2);
const load = factories[name];
if (load === undefined || servers === undefined) {
  throw new Error(
    `usage: steady.ts <${Object.keys(factories).join("|")}> <servers> [payload] [windows] [ms] [inflight]`,
  );
}
const payload = getPayloadSet(payloadName);
const impl = await (await load())(servers, payload);
const req = payload.makeRequest();
const rates: number[] = [];
const cpus: number[] = [];
for (let w = 0; w < Number(windows); w++) {
  const { rate, cpuUs } = await closedLoop(impl, req, Number(inflight), Number(ms));
  rates.push(rate);
  cpus.push(cpuUs);
}
await impl.close();
console.log(
  `${name} ${payloadName}: calls/s ${rates.map((r) => Math.round(r)).join(" ")} | CPU µs/call ${cpus.map((c) => c.toFixed(1)).join(" ")}`,
);
