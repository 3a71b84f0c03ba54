/**
 * Runs a handler at most once per call id across everything that shares a {@link DedupeStore}:
 * the first arrival runs it, duplicates in flight wait for and share its reply, later ones get the
 * stored reply, and the same id with another request or method is refused with `ID_REUSED`.
 *
 * @module
 */
import { hash } from "node:crypto";
import type { Logger } from "pino";
import type { DedupeStore, StoredReply } from "./dedupe/types.js";
import { RpcError } from "./errors.js";
import { type Execution, errorReply } from "./execute.js";
import { HEADER_ERROR_CODE } from "./protocol.js";
import { permissionError } from "./transport/errors.js";

/** The call being deduplicated. */
export interface OnceCall {
  /** The call id the caller sent. */
  id: string;
  /** The method's name. */
  method: string;
  /** The raw request body. */
  data: Uint8Array;
  /** The call's deadline, epoch ms. */
  deadline: number;
  /** The subject, for messages. */
  subject: string;
}

/** What {@link runOnce} needs from its responder: the store, a logger, and hooks for metrics. */
export interface OnceEnv {
  readonly store: DedupeStore;
  readonly log: Logger;
  /** Told when a call is answered without running its handler: a duplicate, or refused. */
  readonly onDuplicate?: ((call: OnceCall, outcome: DedupeOutcome) => void) | undefined;
  /**
   * Told when the store's budget shows: the call was refused with `OVERLOADED` (`refused`, room in
   * `retryAfterMs`), or a duplicate's reply had been dropped (`dropped`, answered `REPLY_DROPPED`).
   */
  readonly onPressure?:
    | ((call: OnceCall, outcome: "refused" | "dropped", retryAfterMs: number) => void)
    | undefined;
}

/**
 * How a call was answered without running its handler: from the stored reply, by joining the running
 * execution, refused for another request with the same id (`conflict`), refused because the store
 * was full of calls still inside their callers' deadlines (`refused`, answered `OVERLOADED`), or a
 * duplicate whose reply the store had dropped to stay within its budget (`dropped`, answered
 * `REPLY_DROPPED`).
 */
export type DedupeOutcome = "replayed" | "joined" | "conflict" | "refused" | "dropped";

/**
 * The request's fingerprint: the method and a hash of the body bytes. A ricochet client resends the
 * same bytes on every attempt, so a retry always matches.
 */
export function fingerprint(method: string, data: Uint8Array): string {
  return `${method}:${hash("sha256", data, "base64url")}`;
}

/** A reply, and whether the call might succeed if it came again (see {@link Execution.retryable}). */
export interface Outcome {
  reply: StoredReply;
  retryable: boolean;
  /** Failed for now, for a reason outside the handler (see {@link Execution.transient}). */
  transient?: boolean;
  /** Set when the reply went out before the store recorded the call: settles once it has. */
  recorded?: Promise<void>;
}

/** Returns the reply for `call`, running `run` only if no execution of the id exists. Never throws on a conflict. */
export function runOnce(
  env: OnceEnv,
  call: OnceCall,
  run: () => Promise<Execution>,
): Promise<Outcome> {
  const print = fingerprint(call.method, call.data);
  let first: Claim | Promise<Claim>;
  try {
    first = env.store.claim(call.id, print, call.deadline);
  } catch (err) {
    first = Promise.reject(err);
  }
  // The common case, a store that answers at once that the call is new: no async frame of ours.
  if (!(first instanceof Promise) && first.status === "owner")
    return runOwner(env, call, run, first);
  return claimLoop(env, call, run, print, first);
}

type Claim = Awaited<ReturnType<DedupeStore["claim"]>>;
type OwnerClaim = Extract<Claim, { status: "owner" }>;

/** Runs the call as the owner of its id, then records its reply in the store. */
function runOwner(
  env: OnceEnv,
  call: OnceCall,
  run: () => Promise<Execution>,
  claim: OwnerClaim,
): Promise<Outcome> {
  let running: Promise<Execution>;
  try {
    running = run();
  } catch (err) {
    running = Promise.reject(err);
  }
  return running.then(
    (outcome) => recordOutcome(env, call, claim, outcome),
    (err: unknown) => ownerFailed(call, claim, err),
  );
}

/** The run failed: never leave the claim running (duplicates would wait on it until their deadlines). */
async function ownerFailed(call: OnceCall, claim: OwnerClaim, err: unknown): Promise<never> {
  const failed = errorReply(
    new RpcError("INTERNAL", `${call.subject}: internal error (call ${call.id})`, scopeOf(call)),
  );
  await Promise.resolve(claim.finish(failed.reply, false)).catch(() => undefined);
  throw err;
}

/** Records the owner's reply in the store; a store slow to record does not hold the reply long. */
function recordOutcome(
  env: OnceEnv,
  call: OnceCall,
  claim: OwnerClaim,
  outcome: Execution,
): Outcome | Promise<Outcome> {
  let finishing: void | Promise<void>;
  try {
    finishing = claim.finish(outcome.reply, outcome.keep);
  } catch (err) {
    failedToRecord(env.log, call, err);
    return outcome;
  }
  if (!(finishing instanceof Promise)) return outcome;
  return slowRecord(env, call, outcome, finishing);
}

async function slowRecord(
  env: OnceEnv,
  call: OnceCall,
  outcome: Execution,
  finishing: Promise<void>,
): Promise<Outcome> {
  // A store that is slow to record (retrying through an outage) must not hold the reply: the
  // claim stays renewed meanwhile, so duplicates wait for the record. A durable command is
  // acknowledged only once `recorded` settles.
  const recorded = finishing.catch((err: unknown) => failedToRecord(env.log, call, err));
  const inTime = await Promise.race([
    recorded.then(() => true),
    new Promise<false>((resolve) => setTimeout(resolve, RECORD_WAIT_MS, false).unref()),
  ]);
  return inTime ? outcome : { ...outcome, recorded };
}

/** The handler ran; its caller gets the reply even if the store could not record it. */
function failedToRecord(log: Logger, call: OnceCall, err: unknown): void {
  log.error(
    { ...scopeOf(call), err },
    "dedupe store failed to record a finished call (after retrying); a duplicate may run again",
  );
}

/** Claims `call`'s id (its first claim `first` made already) until it is answered. */
async function claimLoop(
  env: OnceEnv,
  call: OnceCall,
  run: () => Promise<Execution>,
  print: string,
  first: Claim | Promise<Claim> | undefined,
): Promise<Outcome> {
  const { store, log } = env;
  let failures = 0;
  for (;;) {
    let claim: Claim;
    try {
      const pending = first ?? store.claim(call.id, print, call.deadline);
      first = undefined;
      claim = pending instanceof Promise ? await pending : pending;
    } catch (err) {
      const denied = permissionError(err);
      if (denied) return deniedStore(log, call, denied);
      // A store that cannot answer (a leader election, an outage) must not let the call run without
      // deduplication, which could run it twice: try again until the deadline, then refuse it.
      const delay = Math.min(50 * 2 ** failures++, 1000);
      if (failures === 1) {
        log.warn({ ...scopeOf(call), err }, "dedupe store unavailable; retrying the claim");
      }
      if (Date.now() + delay < call.deadline) {
        await new Promise((resolve) => setTimeout(resolve, delay));
        continue;
      }
      log.error({ ...scopeOf(call), err }, "dedupe store unavailable; call refused, not run");
      const message = `${call.subject}: the dedupe store was unavailable until the deadline (call ${call.id} not run, so it cannot run twice); retry, and check the store (${(err as Error)?.message ?? String(err)})`;
      return {
        ...errorReply(new RpcError("UNAVAILABLE", message, scopeOf(call)), false, true),
        transient: true,
      };
    }
    if (claim.status === "owner") return runOwner(env, call, run, claim);
    if (claim.status === "done") {
      log.debug(scopeOf(call), "duplicate call; replaying the stored reply");
      env.onDuplicate?.(call, "replayed");
      return { reply: claim.reply, retryable: false };
    }
    if (claim.status === "conflict") {
      env.onDuplicate?.(call, "conflict");
      const message = `${call.subject}: call id ${call.id} was already used for a different request or method; use a new id for a new call`;
      return errorReply(new RpcError("ID_REUSED", message, scopeOf(call)));
    }
    if (claim.status === "dropped") {
      // It ran; replaying its reply is no longer possible, and running it again would repeat it.
      env.onDuplicate?.(call, "dropped");
      env.onPressure?.(call, "dropped", 0);
      const message = `${call.subject}: call ${call.id} already ran, but its reply was dropped from the dedupe store to stay within its memory budget; it was not run again, and its effects happened once (the responder's dedupe budget is too small for its load)`;
      return errorReply(new RpcError("REPLY_DROPPED", message, scopeOf(call)));
    }
    if (claim.status === "full") {
      // Forgetting a reply its caller may still ask for could run the call twice: refuse it instead.
      env.onDuplicate?.(call, "refused");
      env.onPressure?.(call, "refused", claim.retryAfterMs);
      const message = `${call.subject}: the dedupe store is full of replies whose callers may still retry (call ${call.id} not run); retry in ${claim.retryAfterMs} ms (the responder's dedupe budget is too small for its load)`;
      return errorReply(
        new RpcError("OVERLOADED", message, {
          ...scopeOf(call),
          details: { retryAfterMs: claim.retryAfterMs },
        }),
        false,
        true,
      );
    }
    log.debug(scopeOf(call), "duplicate of a call in flight; waiting for its reply");
    const left = call.deadline - Date.now();
    let reply: StoredReply | undefined;
    try {
      reply = left > 0 ? await claim.wait(AbortSignal.timeout(left)) : undefined;
    } catch (err) {
      const denied = permissionError(err);
      if (denied) return deniedStore(log, call, denied);
      throw err;
    }
    if (reply) {
      env.onDuplicate?.(call, "joined");
      // The owner's failure (5xx) is not stored, so a later arrival of the id runs it again.
      return { reply, retryable: Number(reply.headers?.[HEADER_ERROR_CODE] ?? 0) >= 500 };
    }
    if (Date.now() >= call.deadline) {
      const message = `${call.subject}: the first execution of call ${call.id} did not finish before the deadline`;
      return errorReply(new RpcError("TIMEOUT", message, scopeOf(call)), false, true);
    }
    // The running owner went away without a reply: claim again, perhaps as the new owner.
  }
}

/** How long a reply waits for a slow store to record its call before it goes out anyway, ms. */
const RECORD_WAIT_MS = 1000;

/**
 * The answer when the responder may not use its dedupe store. Retryable for a durable command (it is
 * delivered again, perhaps to an instance that may, and dead-lettered after `maxDeliver`): never
 * acknowledged unrun.
 */
function deniedStore(log: Logger, call: OnceCall, denied: Error & { subject?: string }): Outcome {
  // Waiting will not help: say so now, naming what the responder may not do.
  const subject = denied.subject ?? "its dedupe store";
  log.error({ ...scopeOf(call), err: denied }, "the responder may not use its dedupe store");
  const message = `${call.subject}: the responder may not use its dedupe store (the server refused ${subject}: ${denied.message}); call ${call.id} not run. Grant the responder's user access to the bucket (see docs/security.md)`;
  return errorReply(new RpcError("PERMISSION_DENIED", message, scopeOf(call)), false, true);
}

/** The log and error fields of a call; made only off the common path. */
function scopeOf(call: OnceCall): { callId: string; subject: string } {
  return { callId: call.id, subject: call.subject };
}
