import type { NatsConnection } from "@nats-io/nats-core";
import type { BenchRequest } from "../payload.js";

/** A gate the benchmark responders await, so replies can be held back to measure calls in flight. */
export function createGate() {
  let held: Promise<void> | undefined;
  let open: (() => void) | undefined;
  let arrived = 0;
  return {
    /** Calls that reached the responder since the last hold(). */
    get arrived() {
      return arrived;
    },
    hold() {
      arrived = 0;
      held = new Promise((r) => {
        open = r;
      });
    },
    release() {
      open?.();
      held = undefined;
    },
    /** Resolves at once unless held. */
    pass(): Promise<void> | undefined {
      arrived++;
      return held;
    },
  };
}

/**
 * A queue-group subscriber that answers every request with hand-written JSON, for the raw baselines.
 * Replies wait at `gate` while it is held.
 */
export function serveJson(
  server: NatsConnection,
  gate: ReturnType<typeof createGate>,
  respond: (req: BenchRequest) => unknown,
): void {
  server.subscribe("bench.charge", {
    queue: "bench",
    callback: (_err, msg) => {
      const res = JSON.stringify(respond(msg.json()));
      const held = gate.pass();
      if (held) void held.then(() => msg.respond(res));
      else msg.respond(res);
    },
  });
}
