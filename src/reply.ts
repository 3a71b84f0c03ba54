/**
 * The client's reading of a reply: a value that passed the response schema, or an {@link RpcError}.
 *
 * @module
 */
import type { AnyMethod } from "./contract.js";
import { isBuiltInCode, RpcError } from "./errors.js";
import {
  decodeBody,
  decodeError,
  HEADER_ERROR,
  HEADER_ERROR_CODE,
  STATUS_NO_RESPONDERS,
} from "./protocol.js";
import type { TransportMessage } from "./transport/types.js";
import { describeIssues, type Validation, validate } from "./validate.js";

/** What a reply says about a call. */
export type ReplyOutcome = { ok: true; value: unknown } | { ok: false; error: RpcError };

/** Where the reply belongs, for error messages. */
export interface ReplyScope {
  readonly method: AnyMethod;
  readonly subject: string;
  readonly callId: string;
}

function fail(
  scope: ReplyScope,
  code: string,
  message: string,
  details?: unknown,
  status?: number,
): ReplyOutcome {
  return {
    ok: false,
    error: new RpcError(code, message, {
      callId: scope.callId,
      subject: scope.subject,
      ...(details === undefined ? {} : { details }),
      ...(status === undefined ? {} : { status }),
    }),
  };
}

/** Decodes and validates one reply. Never throws. */
export function readReply(
  scope: ReplyScope,
  msg: TransportMessage,
): ReplyOutcome | Promise<ReplyOutcome> {
  if (msg.status === STATUS_NO_RESPONDERS && msg.data.length === 0) {
    return fail(
      scope,
      "NO_RESPONDERS",
      `no responders for ${scope.subject} (call ${scope.callId}); is a responder running?`,
    );
  }
  const errorCode = msg.header(HEADER_ERROR_CODE);
  if (errorCode !== undefined) return readError(scope, msg, Number(errorCode));

  let body: unknown;
  try {
    body = decodeBody(msg.data);
  } catch (err) {
    return fail(
      scope,
      "INVALID_RESPONSE",
      `reply from ${scope.subject} is not valid JSON (call ${scope.callId})`,
      {
        reason: (err as Error).message,
      },
    );
  }
  return settleValidation(validate(scope.method.response, body), (v) =>
    v.ok
      ? { ok: true, value: v.value }
      : fail(
          scope,
          "INVALID_RESPONSE",
          `reply from ${scope.subject} does not match the contract (call ${scope.callId}): ${describeIssues(v.issues)}; are both sides on the same contract version?`,
          { issues: v.issues },
        ),
  );
}

function readError(
  scope: ReplyScope,
  msg: TransportMessage,
  status: number,
): ReplyOutcome | Promise<ReplyOutcome> {
  const wire = decodeError(
    Number.isFinite(status) ? status : 500,
    msg.header(HEADER_ERROR),
    msg.data,
  );
  if (isBuiltInCode(wire.code))
    return fail(scope, wire.code, wire.message, wire.details, wire.status);
  const schema = scope.method.errors[wire.code];
  if (schema === undefined) {
    return fail(
      scope,
      "INVALID_RESPONSE",
      `${scope.subject} failed with code '${wire.code}', which the contract does not declare (call ${scope.callId}); is the responder on a newer contract?`,
      { code: wire.code, message: wire.message, details: wire.details },
    );
  }
  return settleValidation(validate(schema, wire.details), (v) =>
    v.ok
      ? fail(scope, wire.code, wire.message, v.value, wire.status)
      : fail(
          scope,
          "INVALID_RESPONSE",
          `${scope.subject} failed with '${wire.code}', but its details do not match the contract (call ${scope.callId}): ${describeIssues(v.issues)}`,
          { code: wire.code, issues: v.issues },
        ),
  );
}

function settleValidation(
  v: Validation | Promise<Validation>,
  then: (v: Validation) => ReplyOutcome,
): ReplyOutcome | Promise<ReplyOutcome> {
  return v instanceof Promise ? v.then(then) : then(v);
}
