/**
 * Why ricochet's per-call tables are not `Map`s (docs/performance.md, "Garbage that does not die
 * young"): raw nats.js pub/sub, 64 calls in flight, with the pending replies kept either in a `Map`
 * (the usual way) or in an array of slots with a free list (what src/slots.ts does). Each mode runs in
 * its own process, three times, alternating, against a nats-server this script starts; every run
 * reports its calls/s and V8's young-generation collections (how many, and their total pause).
 *
 *   npx tsx --tsconfig bench/tsconfig.json bench/map-churn.ts            # 3 × 2 runs of 5 s, ~40 s
 *
 * With a `Map`, most runs show young collections 5-10× longer than with slots, and fewer calls/s: the
 * rehashed tables chain to each other, and once one is old every later one is promoted with what it
 * holds.
 */
import { spawnSync } from "node:child_process";
import { cpus } from "node:os";
import { PerformanceObserver } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import { connect } from "@nats-io/transport-node";
import { startNatsServer } from "../test/support/nats-server.js";
import { closedLoop } from "./loop.js";

const SECONDS = 5;
const INFLIGHT = 64;

/** One run in this process: `mode` is "map" or "slots". Prints one JSON line. */
async function child(servers: string, mode: string) {
  const [a, b] = await Promise.all([connect({ servers }), connect({ servers })]);
  b.subscribe("churn.echo", {
    queue: "q",
    callback: (_e, m) => {
      m.respond(m.data);
    },
  });
  await b.flush();
  const inbox = `_INBOX.churn${process.pid}`;
  const map = new Map<string, () => void>();
  const slots: Array<(() => void) | undefined> = [];
  const free: number[] = [];
  a.subscribe(`${inbox}.*`, {
    callback: (_e, m) => {
      const key = m.subject.slice(inbox.length + 1);
      if (mode === "map") {
        const resolve = map.get(key);
        map.delete(key);
        resolve?.();
      } else {
        const i = Number(key);
        const resolve = slots[i];
        slots[i] = undefined;
        free.push(i);
        resolve?.();
      }
    },
  });
  await a.flush();
  const data = new TextEncoder().encode(JSON.stringify({ note: "x".repeat(180) }));
  let seq = 0;
  const call = () =>
    new Promise<void>((resolve) => {
      let key: string;
      if (mode === "map") {
        key = String(seq++);
        map.set(key, resolve);
      } else {
        const i = free.pop() ?? slots.length;
        slots[i] = resolve;
        key = String(i);
      }
      a.publish("churn.echo", data, { reply: `${inbox}.${key}` });
    });
  let minor = 0;
  let minorMs = 0;
  let major = 0;
  const observer = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      const kind = (e as { detail?: { kind?: number } }).detail?.kind;
      if (kind === 1) {
        minor++;
        minorMs += e.duration;
      } else major++;
    }
  });
  const impl = { call };
  await closedLoop(impl, undefined, INFLIGHT, 1000); // start-up, unmeasured
  observer.observe({ entryTypes: ["gc"] });
  const { rate } = await closedLoop(impl, undefined, INFLIGHT, SECONDS * 1000);
  observer.disconnect();
  process.stdout.write(
    `${JSON.stringify({ mode, callsPerSec: Math.round(rate), minor, minorMs, major })}\n`,
  );
  await Promise.all([a.close(), b.close()]);
}

async function main() {
  const [servers, mode] = process.argv.slice(2);
  if (servers !== undefined && mode !== undefined) return child(servers, mode);
  const pin = spawnSync("taskset", ["-c", "0", "true"]).status === 0 && cpus().length >= 2;
  const server = await startNatsServer(pin ? { wrap: ["taskset", "-c", "0"] } : {});
  const self = fileURLToPath(import.meta.url);
  try {
    console.log(
      "| run | pending calls in | calls/s | young collections | their total pause ms | full collections |",
    );
    console.log("|---|---|---:|---:|---:|---:|");
    for (let run = 1; run <= 3; run++) {
      for (const mode of ["map", "slots"]) {
        const cmd = [...(pin ? ["taskset", "-c", "1"] : []), process.execPath];
        const out = spawnSync(
          cmd[0] as string,
          [...cmd.slice(1), "--import", "tsx", self, server.url, mode],
          { encoding: "utf8" },
        );
        if (out.status !== 0) throw new Error(`run ${mode} failed: ${out.stderr}`);
        const r = JSON.parse(out.stdout.trim().split("\n").pop() as string);
        const label = mode === "map" ? "a `Map`" : "an array of slots";
        console.log(
          `| ${run} | ${label} | ${r.callsPerSec} | ${r.minor} | ${r.minorMs.toFixed(0)} | ${r.major} |`,
        );
      }
    }
  } finally {
    await server.stop();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
