/**
 * What a responder does with one call once it has a slot: decode, validate, and run the handler at
 * most once per call id (through the dedupe store), producing the answer to send.
 *
 * @module
 */
import { nanoid } from "nanoid";
import type { Logger } from "pino";
import { LazyContext } from "./context.js";
import type { AnyContract, AnyMethod } from "./contract.js";
import type { DedupeStore } from "./dedupe/types.js";
import type { Answer } from "./durable.js";
import { RpcError } from "./errors.js";
import { errorReply, execute } from "./execute.js";
import type { ResponderMiddleware } from "./middleware.js";
import { type DedupeOutcome, type OnceCall, type OnceEnv, runOnce } from "./once.js";
import {
  decodeBody,
  HEADER_ATTEMPT,
  HEADER_CALL_ID,
  HEADER_PROGRESS,
  HEADER_TIMEOUT,
  INVALID,
  isValidCallId,
  MAX_BUDGET_MS,
  MAX_CALL_ID_LENGTH,
  parseAttemptHeader,
  parseCallToken,
  parseMillisHeader,
} from "./protocol.js";
import { HEADER_REPLAY_CALL_ID, type QueuedCommand } from "./transport/queue.js";
import type { TransportMessage } from "./transport/types.js";
import { describeIssues, type Validation, validate } from "./validate.js";

/** One call as the responder received it. */
export interface IncomingCall {
  readonly name: string;
  /** The method's definition, or `undefined` for a durable command naming a method not served here. */
  readonly method: AnyMethod | undefined;
  readonly msg: TransportMessage;
  /** Set for a durable command: it is settled on the queue, not just answered. */
  readonly command?: QueuedCommand | undefined;
  /** Epoch ms when its time started, for the deadline. */
  received: number;
  /** Its metadata, when the responder read it already (see {@link readCallMeta}). */
  readonly sent?: CallMeta | undefined;
}

/** What the handling of calls needs from its responder. */
export interface HandleEnv {
  readonly contract: AnyContract;
  readonly handlers: Record<string, unknown>;
  readonly use: readonly ResponderMiddleware[];
  readonly log: Logger;
  readonly defaultTimeoutMs: number;
  /** The dedupe store, or `undefined` when deduplication is off. */
  readonly dedupe: DedupeStore | undefined;
  /** Aborted when the responder's shutdown gives up waiting: every running handler's signal aborts. */
  readonly stopping?: AbortSignal | undefined;
  readonly onDuplicate?:
    | ((info: { service: string; method: string; id: string; outcome: DedupeOutcome }) => void)
    | undefined;
}

/**
 * Returns the function that answers one call: at once when it can, else with a promise. It never
 * throws (or rejects) for anything the caller sent.
 */
export function callHandler(env: HandleEnv): (call: IncomingCall) => Answer | Promise<Answer> {
  const { contract, handlers, use, log, defaultTimeoutMs, dedupe } = env;
  const service = contract.service;
  const onDuplicate = env.onDuplicate;
  const lastWarning = { refused: 0, dropped: 0 };
  const once: OnceEnv | undefined = dedupe && {
    store: dedupe,
    log,
    onDuplicate:
      onDuplicate &&
      ((call: OnceCall, outcome: DedupeOutcome) =>
        onDuplicate({ service, method: call.method, id: call.id, outcome })),
    onPressure: (call, outcome, retryAfterMs) => {
      // Said once a second at most: under a flood, every call would say it.
      const now = Date.now();
      if (now - lastWarning[outcome] < 1000) return;
      lastWarning[outcome] = now;
      const scope = { subject: call.subject, callId: call.id };
      if (outcome === "refused") {
        log.warn(
          { ...scope, retryAfterMs },
          "dedupe store full of calls whose callers may still retry; refusing new calls with OVERLOADED until their deadlines pass (raise memoryDedupe's maxBytes?)",
        );
      } else {
        log.warn(
          scope,
          "a duplicate arrived for a call whose reply the dedupe store dropped to stay within maxBytes; answered REPLY_DROPPED, not run again (raise memoryDedupe's maxBytes?)",
        );
      }
    },
  };

  /** After validation: runs the handler (at most once per call id, with a store) unless too late. */
  const proceed = (
    incoming: IncomingCall,
    method: AnyMethod,
    subject: string,
    id: string,
    sentId: string | undefined,
    deadline: number,
    sent: CallMeta,
    checked: Validation,
  ): Answer | Promise<Answer> => {
    if (!checked.ok) {
      const message = `${subject}: invalid request: ${describeIssues(checked.issues)}`;
      const details = { issues: checked.issues };
      return poison(new RpcError("INVALID_REQUEST", message, { callId: id, subject, details }));
    }
    // Checked after validation: an invalid request is INVALID_REQUEST however late it is.
    if (Date.now() >= deadline) {
      const scope = { callId: id, subject };
      log.debug(scope, "deadline passed while the call waited; handler not run");
      const message = `${subject}: the deadline passed before the handler started (call ${id})`;
      return fail(new RpcError("TIMEOUT", message, scope));
    }
    const { name, msg, command } = incoming;
    const attempt = command ? command.delivery : ((sent.attempt as number | undefined) ?? 1);
    const handler = handlers[name] as (request: unknown, ctx: LazyContext) => unknown;
    const request = checked.value;
    const run = () => {
      const ctx = new LazyContext(id, attempt, deadline, service, name, msg, log, env.stopping);
      return execute(handler, request, method, ctx, log, use);
    };
    // Without a store, for a caller that sent no id (nothing to deduplicate on), or for a method its
    // contract says is safe to run twice, just run.
    if (once === undefined || sentId === undefined || !method.dedupe) return run();
    return runOnce(once, { id, method: name, data: msg.data, deadline, subject }, run);
  };

  return (incoming) => {
    const { name, method, msg, received, command } = incoming;
    // A durable command is named by its method, not by the queue's subject it came on.
    const subject = command ? `${service}.${name}` : msg.subject;
    const sent = incoming.sent ?? readCallMeta(msg, command !== undefined);
    // A replayed dead letter is stored under a message id of its own; its call id travels beside it.
    const sentId = command?.header(HEADER_REPLAY_CALL_ID) || sent.id;
    const idOk = sentId === undefined || isValidCallId(sentId);
    const id = sentId !== undefined && idOk ? sentId : nanoid();
    if (method === undefined) {
      // A durable command for a method this (older?) responder lacks: another one may serve it.
      const message = `${subject}: this responder serves ${service} ${contract.version}, which has no method '${name}' (call ${id})`;
      return fail(new RpcError("UNAVAILABLE", message, { callId: id, subject }));
    }
    if (sent.brokenToken !== undefined) {
      const message = `${subject}: invalid request: the call token in the reply subject is malformed: ${sent.brokenToken} (call ${id})`;
      const details = { reply: sent.brokenToken };
      return poison(new RpcError("INVALID_REQUEST", message, { callId: id, subject, details }));
    }
    const broken = brokenHeader(sent, idOk);
    if (broken !== undefined) {
      const message = `${subject}: invalid request: ${broken} (call ${id})`;
      return poison(
        new RpcError("INVALID_REQUEST", message, {
          callId: id,
          subject,
          details: { header: broken },
        }),
      );
    }
    // A stored command's caller budget says nothing about now: each delivery gets the default.
    const sentBudget = command ? undefined : (sent.timeout as number | undefined);
    const deadline = received + Math.min(sentBudget ?? defaultTimeoutMs, MAX_BUDGET_MS);
    let body: unknown;
    try {
      body = decodeBody(msg.data);
    } catch (err) {
      const message = `${subject}: the request body is not valid JSON (call ${id})`;
      const details = { reason: (err as Error).message };
      return poison(new RpcError("INVALID_REQUEST", message, { callId: id, subject, details }));
    }
    const pending = validate(method.request, body);
    if (pending instanceof Promise) {
      return pending.then((checked) =>
        proceed(incoming, method, subject, id, sentId, deadline, sent, checked),
      );
    }
    return proceed(incoming, method, subject, id, sentId, deadline, sent, pending);
  };
}

/**
 * A call's own metadata as sent, each value parsed by its rule (see docs/protocol.md): from its
 * headers, or, when it has none of them, from the call token ending its reply subject.
 */
export interface CallMeta {
  id?: string;
  timeout?: number | typeof INVALID | undefined;
  attempt?: number | typeof INVALID | undefined;
  progress?: number | typeof INVALID | undefined;
  /** The rule a call token breaks (the call then carries nothing else). */
  brokenToken?: string;
}

/**
 * Reads ricochet's own metadata from `msg`: its four headers, as sent. The transport files them under
 * their canonical spelling whatever case they came in, and joins a repeated one with a line feed
 * (which breaks every rule). A request with none of them takes them from a call token at the end of
 * its reply subject, if it has one; a durable command (`command`) never does.
 */
export function readCallMeta(
  msg: Pick<TransportMessage, "header" | "reply">,
  command: boolean,
): CallMeta {
  const out: CallMeta = {};
  const id = msg.header(HEADER_CALL_ID);
  const timeout = msg.header(HEADER_TIMEOUT);
  const attempt = msg.header(HEADER_ATTEMPT);
  const progress = msg.header(HEADER_PROGRESS);
  if (
    id === undefined &&
    timeout === undefined &&
    attempt === undefined &&
    progress === undefined
  ) {
    const reply = msg.reply;
    if (command || reply === undefined) return out;
    const token = parseCallToken(reply);
    if (token === undefined) return out;
    if ("broken" in token) {
      out.brokenToken = token.broken;
      return out;
    }
    out.id = token.id;
    out.timeout = token.budgetMs;
    out.attempt = token.attempt;
    out.progress = token.windowMs;
    return out;
  }
  // Headers rule: a call token beside any of them is not read.
  if (id !== undefined) out.id = id;
  if (timeout !== undefined) out.timeout = parseMillisHeader(timeout);
  if (attempt !== undefined) out.attempt = parseAttemptHeader(attempt);
  if (progress !== undefined) out.progress = parseMillisHeader(progress);
  return out;
}

/** A failure before the handler ran: another delivery (or instance) may do better. */
function fail(err: RpcError): Answer {
  return { reply: errorReply(err).reply, retryable: true };
}

/** A request no delivery can serve: answered, and a durable command dead-lettered as poison. */
function poison(err: RpcError): Answer {
  return { reply: errorReply(err).reply, retryable: false, poison: err };
}

/** Why the call's own headers break their rules, or `undefined` when they do not. */
function brokenHeader(sent: CallMeta, idOk: boolean): string | undefined {
  if (sent.id?.includes("\n")) {
    return `header ${HEADER_CALL_ID} was sent more than once (names are matched case-insensitively)`;
  }
  if (!idOk) {
    return `${HEADER_CALL_ID} must be 1 to ${MAX_CALL_ID_LENGTH} characters, without control characters or surrounding spaces`;
  }
  if (sent.timeout === INVALID) {
    return `${HEADER_TIMEOUT} must be whole milliseconds in ASCII digits (no sign, spaces, decimals or exponent)`;
  }
  if (sent.attempt === INVALID) {
    return `${HEADER_ATTEMPT} must be an integer from 1 in ASCII digits, without leading zeros`;
  }
  if (sent.progress === INVALID) {
    return `${HEADER_PROGRESS} must be whole milliseconds in ASCII digits`;
  }
  return undefined;
}
