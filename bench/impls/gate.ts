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
