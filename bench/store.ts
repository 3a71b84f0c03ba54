/**
 * memoryDedupe alone, in a loop: the fingerprint, the claim and the record of one call, as a responder
 * makes them, at a steady rate on a simulated clock (40,000 calls/s, 5 s deadlines, 54-byte replies),
 * first while the store grows to its steady size, then at that size. No network, no other work: what
 * the store itself costs a call.
 *
 *   npx tsx --tsconfig bench/tsconfig.json bench/store.ts [calls per phase 400000] [request bytes 199]
 *     [reply bytes 54]   (the large payload set: 2014 1256)
 */
import { nanoid } from "nanoid";
import { memoryDedupe } from "../src/dedupe/memory.js";
import { fingerprint } from "../src/once.js";
import { encodeCallToken, parseCallToken } from "../src/protocol.js";

const calls = Number(process.argv[2] ?? 400_000);
let now = 1_000_000;
const store = memoryDedupe({ now: () => now });
const request = Buffer.alloc(Number(process.argv[3] ?? 199), "x");
const reply = { data: Buffer.alloc(Number(process.argv[4] ?? 54), "y") };

/** Call ids as a responder gets them: read from the call token of a reply subject. */
function ids(n: number): string[] {
  return Array.from({ length: n }, () => {
    const token = encodeCallToken("1", nanoid(), 1, 5000, 1000);
    const parsed = parseCallToken(`_INBOX.abc.${token}`);
    if (parsed === undefined || "broken" in parsed) throw new Error("bad call token");
    return parsed.id;
  });
}

function phase(label: string): void {
  const batch = ids(calls);
  const t0 = process.hrtime.bigint();
  for (const id of batch) {
    now += 0.025;
    const claim = store.claim(id, fingerprint("charge", request), now + 5000);
    if (claim.status !== "owner") throw new Error(`unexpected ${claim.status}`);
    claim.finish(reply, true);
  }
  const ns = Number(process.hrtime.bigint() - t0) / calls;
  console.log(
    `${label}: ${(ns / 1000).toFixed(2)} µs a call; ${store.size} calls held in ${(store.bytes / 2 ** 20).toFixed(0)} MiB`,
  );
}

console.log(`request ${request.length} B, reply ${reply.data.length} B`);
phase("growing (the first 10 s of calls)");
phase("steady");
phase("steady");
