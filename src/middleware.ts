/**
 * Middleware: code that runs around every call, on the client or in the responder, for cross-cutting
 * work such as authentication, tracing and metrics. A middleware calls `next()` once to continue and
 * may act on its result or error; it can refuse a call by throwing instead.
 *
 * @module
 */
import type { CallContext } from "./context.js";

/** A call as client middleware sees it, before it is sent. */
export interface OutgoingCall {
  /** The contract's service name. */
  readonly service: string;
  /** The method's name. */
  readonly method: string;
  /** The subject the call goes to. */
  readonly subject: string;
  /** The call id, fixed for all its attempts. */
  readonly id: string;
  /** The request as the caller passed it (before validation). */
  readonly input: unknown;
  /**
   * Headers to send; middleware may add to them (e.g. `traceparent`). A call with any header sends
   * its metadata as headers too, not in a call token (see `ClientOptions.wire`).
   */
  readonly headers: Record<string, string>;
}

/**
 * Runs around each client call. `next()` sends the call (with every retry) and settles with its
 * response or rejects with its {@link RpcError}.
 *
 * @example
 * const auth: ClientMiddleware = (call, next) => {
 *   call.headers.Authorization = `Bearer ${token}`;
 *   return next();
 * };
 */
export type ClientMiddleware = (
  call: OutgoingCall,
  next: () => Promise<unknown>,
) => Promise<unknown>;

/**
 * Runs around each handler in the responder, after the request was validated. `next()` runs the rest
 * of the chain and the handler, resolving with what the handler returned or rejecting with what it
 * threw. Throw `ctx.fail(...)` to refuse a call with a contract error.
 *
 * @example
 * const timing: ResponderMiddleware = async (ctx, _request, next) => {
 *   const t0 = performance.now();
 *   try { return await next(); } finally { ctx.logger.info({ ms: performance.now() - t0 }, "handled"); }
 * };
 */
export type ResponderMiddleware = (
  ctx: CallContext,
  request: unknown,
  next: () => Promise<unknown>,
) => Promise<unknown>;

/** Runs `chain` around `last`: the first middleware is the outermost. */
export function compose<A extends unknown[]>(
  chain: ReadonlyArray<(...args: [...A, () => Promise<unknown>]) => Promise<unknown>>,
  args: A,
  last: () => Promise<unknown>,
): Promise<unknown> {
  const step = (i: number): Promise<unknown> => {
    const mw = chain[i];
    if (mw === undefined) return last();
    let called = false;
    const next = () => {
      if (called) return Promise.reject(new Error("middleware called next() more than once"));
      called = true;
      return step(i + 1);
    };
    // A middleware that throws synchronously must still yield a rejected promise, so the layers
    // around it (metrics, tracing) see the outcome.
    try {
      return Promise.resolve(mw(...args, next));
    } catch (err) {
      return Promise.reject(err);
    }
  };
  return step(0);
}
