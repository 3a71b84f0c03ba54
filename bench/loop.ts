import { performance } from "node:perf_hooks";
import type { Impl } from "./impls/types.js";

/**
 * Closed loop: `inflight` workers each make calls with `req` back to back for `ms`. Returns the calls
 * made, calls/s, and the process's CPU (user + system) per call, in µs.
 */
export async function closedLoop(
  impl: Pick<Impl, "call">,
  req: unknown,
  inflight: number,
  ms: number,
) {
  let done = 0;
  const until = performance.now() + ms;
  const worker = async () => {
    while (performance.now() < until) {
      await impl.call(req);
      done++;
    }
  };
  const t0 = performance.now();
  const cpu0 = process.cpuUsage();
  await Promise.all(Array.from({ length: inflight }, worker));
  const cpu = process.cpuUsage(cpu0);
  return {
    done,
    rate: done / ((performance.now() - t0) / 1000),
    cpuUs: (cpu.user + cpu.system) / done,
  };
}
