import type { Msg, NatsConnection } from "@nats-io/nats-core";

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
    /** The gate's side of an {@link Impl}: spread it into the implementation. */
    controls() {
      return { hold: this.hold, release: this.release, arrived: () => arrived };
    },
    /** Resolves at once unless held. */
    pass(): Promise<void> | undefined {
      arrived++;
      return held;
    },
  };
}

/** Answers `msg` with the JSON of `respond(request)`, once the gate lets it through. */
export function respondJson(
  gate: ReturnType<typeof createGate>,
  msg: Msg,
  respond: (req: unknown) => unknown,
): void {
  const res = JSON.stringify(respond(msg.json()));
  const held = gate.pass();
  if (held) void held.then(() => msg.respond(res));
  else msg.respond(res);
}

/** A queue-group subscriber that answers every request through {@link respondJson}, for the raw baselines. */
export function serveJson(
  server: NatsConnection,
  gate: ReturnType<typeof createGate>,
  respond: (req: unknown) => unknown,
): void {
  server.subscribe("bench.charge", {
    queue: "bench",
    callback: (_err, msg) => respondJson(gate, msg, respond),
  });
}

/** A call made the way nats.js documents it: `nc.request()` with hand-written JSON. */
export function requestJson(client: NatsConnection) {
  return async (req: unknown): Promise<unknown> =>
    (await client.request("bench.charge", JSON.stringify(req), { timeout: 60_000 })).json();
}
