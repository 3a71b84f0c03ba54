/**
 * One execution of a handler, turned into the reply that goes on the wire, and whether that reply may
 * be kept for replay to duplicates of the call.
 *
 * @module
 */
import { nanoid } from "nanoid";
import type { Logger } from "pino";
import { type LazyContext, RETRY_LATER } from "./context.js";
import type { AnyMethod } from "./contract.js";
import type { StoredReply } from "./dedupe/types.js";
import { isBuiltInCode, isRpcError, RPC_CODES, RpcError } from "./errors.js";
import { compose, type ResponderMiddleware } from "./middleware.js";
import { encodeBody, encodeError } from "./protocol.js";
import { type Validation, validate } from "./validate.js";

/** The reply and whether it is a deterministic outcome worth replaying (a value or a contract error). */
export interface Execution {
  reply: StoredReply;
  keep: boolean;
  /**
   * Whether running the handler again might succeed: it threw (not a contract error) or ran out of
   * time. A handler that returned, even a value the contract refuses, completed: running it again
   * would repeat its effects. Durable commands are redelivered only when this is true.
   */
  retryable: boolean;
  /** The code of an error reply, for logs and metrics. */
  code: string | undefined;
  /**
   * The call failed for now, for a reason outside its handler (a dependency unavailable, or
   * `ctx.retryLater()`): it may succeed later. Durable commands are tried again without counting a
   * delivery toward `maxDeliver`.
   */
  transient?: boolean;
}

/** Errors that mean "failed for now, for a reason outside the handler". */
const TRANSIENT = new WeakSet<object>();

/** Builds the wire form of an error reply. */
export function errorReply(err: RpcError, keep = false, retryable = false): Execution {
  try {
    return { reply: encodeError(err), keep, retryable, code: err.code };
  } catch {
    // Details JSON cannot hold (a bigint, a cycle): answer INTERNAL rather than fail to answer.
    const internal = new RpcError("INTERNAL", `${err.subject ?? "call"}: internal error`, {
      ...(err.callId === undefined ? {} : { callId: err.callId }),
    });
    return { reply: encodeError(internal), keep: false, retryable, code: internal.code };
  }
}

/**
 * Runs `handler` and turns its outcome into a reply: its value (checked against the response schema),
 * a contract error (details checked), or a generic `INTERNAL` / `TIMEOUT` that hides the cause. Never
 * throws.
 */
export function execute(
  handler: (request: unknown, ctx: LazyContext) => unknown,
  request: unknown,
  method: AnyMethod,
  ctx: LazyContext,
  log: Logger,
  use: readonly ResponderMiddleware[] = [],
): Promise<Execution> {
  if (use.length > 0) return executeComposed(handler, request, method, ctx, log, use);
  // Without middleware, the handler's own promise carries the call: no async layers of ours.
  let result: unknown;
  try {
    result = handler(request, ctx);
  } catch (err) {
    return handlerFailed(err, method, ctx, log);
  }
  if (result instanceof Promise) {
    return result.then(
      (value) => handlerReturned(value, method, ctx, log),
      (err: unknown) => handlerFailed(err, method, ctx, log),
    );
  }
  try {
    return Promise.resolve(handlerReturned(result, method, ctx, log));
  } catch (err) {
    return Promise.reject(err);
  }
}

/** The handler returned `result`: checks it against the response schema and encodes it. */
function handlerReturned(
  result: unknown,
  method: AnyMethod,
  ctx: LazyContext,
  log: Logger,
): Execution | Promise<Execution> {
  const pending = validate(method.response, result);
  return pending instanceof Promise
    ? pending.then((out) => checkedResponse(out, method, ctx, log))
    : checkedResponse(pending, method, ctx, log);
}

function checkedResponse(
  out: Validation,
  method: AnyMethod,
  ctx: LazyContext,
  log: Logger,
): Execution | Promise<Execution> {
  if (!out.ok) {
    let err: RpcError;
    try {
      err = internalError(
        ctx,
        log,
        { issues: out.issues },
        "handler returned a value that fails the response schema",
      );
    } catch (thrown) {
      return failedExecution(thrown, false, true, method, ctx, log);
    }
    return failedExecution(err, true, true, method, ctx, log);
  }
  ctx.dispose();
  return encodedValue(out.value, ctx, log);
}

/** The handler threw (or rejected) `err`: its reply error is final. */
async function handlerFailed(
  err: unknown,
  method: AnyMethod,
  ctx: LazyContext,
  log: Logger,
): Promise<Execution> {
  let replyError: RpcError;
  try {
    replyError = await toReplyError(err, method, ctx, log);
  } catch (thrown) {
    return failedExecution(thrown, false, false, method, ctx, log);
  }
  return failedExecution(replyError, true, false, method, ctx, log);
}

/**
 * The error reply for `err`: made final already (`final`), or thrown by a middleware or by ricochet
 * on its own. `returned`: whether the handler returned. Disposes of the context.
 */
async function failedExecution(
  err: unknown,
  final: boolean,
  returned: boolean,
  method: AnyMethod,
  ctx: LazyContext,
  log: Logger,
): Promise<Execution> {
  try {
    // A middleware may throw on its own: a contract error goes out, anything else is hidden.
    const replyError = final ? (err as RpcError) : await toReplyError(err, method, ctx, log);
    const declared = Object.hasOwn(method.errors, replyError.code);
    const out = errorReply(replyError, declared, !declared && !returned);
    if (TRANSIENT.has(replyError)) out.transient = true;
    return out;
  } finally {
    ctx.dispose();
  }
}

/** The reply carrying the handler's (checked) value. */
function encodedValue(value: unknown, ctx: LazyContext, log: Logger): Execution {
  try {
    return { reply: { data: encodeBody(value) }, keep: true, retryable: false, code: undefined };
  } catch (err) {
    return errorReply(
      internalError(ctx, log, { err }, "handler returned a value that cannot be encoded as JSON"),
    );
  }
}

/** {@link execute} with middleware around the handler. */
async function executeComposed(
  handler: (request: unknown, ctx: LazyContext) => unknown,
  request: unknown,
  method: AnyMethod,
  ctx: LazyContext,
  log: Logger,
  use: readonly ResponderMiddleware[],
): Promise<Execution> {
  // Errors already turned into what the caller will get, so middleware (metrics, tracing) sees the
  // same outcome as the caller, and nothing is mapped or logged twice.
  // (One variable, not a set: the handler runs once, so at most one error is made final.)
  let final: RpcError | undefined;
  const settled = (err: RpcError) => {
    final = err;
    return err;
  };
  /** The handler, then the response schema: resolves the value to send, or throws the final RpcError. */
  let returned = false;
  const last = async (): Promise<unknown> => {
    let result: unknown;
    try {
      result = handler(request, ctx);
      if (result instanceof Promise) result = await result;
    } catch (err) {
      throw settled(await toReplyError(err, method, ctx, log));
    }
    returned = true;
    const pending = validate(method.response, result);
    const out = pending instanceof Promise ? await pending : pending;
    if (!out.ok) {
      throw settled(
        internalError(
          ctx,
          log,
          { issues: out.issues },
          "handler returned a value that fails the response schema",
        ),
      );
    }
    return out.value;
  };
  let value: unknown;
  try {
    value = await compose(use, [ctx, request], last);
  } catch (err) {
    // (failedExecution disposes of the context.)
    return failedExecution(err, err !== undefined && err === final, returned, method, ctx, log);
  }
  ctx.dispose();
  return encodedValue(value, ctx, log);
}

function isContractError(err: unknown, method: AnyMethod): err is RpcError {
  return isRpcError(err) && Object.hasOwn(method.errors, err.code);
}

/** Turns whatever a handler threw into the error the caller may see. */
async function toReplyError(
  err: unknown,
  method: AnyMethod,
  ctx: LazyContext,
  log: Logger,
): Promise<RpcError> {
  const scope = { callId: ctx.id, subject: ctx.subject };
  if (isContractError(err, method)) {
    const checked = await validate(method.errors[err.code], err.details);
    if (checked.ok)
      return new RpcError(err.code, err.message, { ...scope, details: checked.value });
    return internalError(
      ctx,
      log,
      { code: err.code, issues: checked.issues },
      "contract error details fail the contract's schema",
    );
  }
  if (Date.now() >= ctx.deadline) {
    // Most often the handler gave up on ctx.signal. The caller has stopped waiting; TIMEOUT says why.
    log.warn({ ...scope, err }, "handler failed after the call's deadline");
    return new RpcError(
      "TIMEOUT",
      `${ctx.subject}: the handler did not finish before the deadline (call ${ctx.id})`,
      scope,
    );
  }
  if (isRpcError(err) && isBuiltInCode(err.code) && RPC_CODES[err.code].retryable) {
    // A call it made found its dependency unavailable (and the handler let that through), or it
    // threw ctx.retryLater(): not the handler's own failure, and it may succeed later.
    const own = RETRY_LATER.has(err);
    log.warn(
      { ...scope, code: err.code },
      own ? "handler asked to be retried later" : "a dependency is unavailable for now",
    );
    const message = own
      ? err.message
      : `${ctx.subject}: a service this call depends on is unavailable for now (${err.code}; call ${ctx.id}); retry later`;
    const transient = new RpcError("UNAVAILABLE", message, {
      ...scope,
      details: { cause: err.code },
    });
    TRANSIENT.add(transient);
    return transient;
  }
  return internalError(ctx, log, { err }, "handler failed");
}

/**
 * An `INTERNAL` error for the caller, and its log line for the operator. The reply says nothing of the
 * cause (no message, no stack); both carry one error id, so a caller's report finds the log line.
 */
function internalError(
  ctx: LazyContext,
  log: Logger,
  fields: Record<string, unknown>,
  what: string,
): RpcError {
  const errorId = nanoid(12);
  const scope = { callId: ctx.id, subject: ctx.subject };
  log.error({ ...scope, errorId, ...fields }, what);
  return new RpcError(
    "INTERNAL",
    `${ctx.subject}: internal error (call ${ctx.id}, error id ${errorId}: the responder's log has the cause)`,
    { ...scope, details: { errorId } },
  );
}
