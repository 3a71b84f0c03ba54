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
  /** Told when a duplicate is answered without running the handler. */
  onDuplicate?: ((outcome: DedupeOutcome) => void) | undefined;
}

/** How a duplicate call was answered: from the stored reply, by joining the running execution, or refused. */
export type DedupeOutcome = "replayed" | "joined" | "conflict";

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
}

/** Returns the reply for `call`, running `run` only if no execution of the id exists. Never throws on a conflict. */
export async function runOnce(
  store: DedupeStore,
  call: OnceCall,
  run: () => Promise<Execution>,
  log: Logger,
): Promise<Outcome> {
  const scope = { callId: call.id, subject: call.subject };
  const print = fingerprint(call.method, call.data);
  for (;;) {
    let claim: Awaited<ReturnType<DedupeStore["claim"]>>;
    try {
      const pending = store.claim(call.id, print);
      claim = pending instanceof Promise ? await pending : pending;
    } catch (err) {
      // A store that is down must not stop the service: run without deduplication, and say so.
      log.error({ ...scope, err }, "dedupe store failed; running the call without deduplication");
      return await run();
    }
    if (claim.status === "owner") {
      let outcome: Execution;
      try {
        outcome = await run();
      } catch (err) {
        // Never leave the claim running: duplicates would wait on it until their deadlines, forever.
        const failed = errorReply(
          new RpcError("INTERNAL", `${call.subject}: internal error (call ${call.id})`, scope),
        );
        await Promise.resolve(claim.finish(failed.reply, false)).catch(() => undefined);
        throw err;
      }
      try {
        const finishing = claim.finish(outcome.reply, outcome.keep);
        if (finishing instanceof Promise) await finishing;
      } catch (err) {
        // The handler ran; its caller gets the reply even if the store could not record it.
        log.error(
          { ...scope, err },
          "dedupe store failed to record a finished call; a duplicate may run again",
        );
      }
      return outcome;
    }
    if (claim.status === "done") {
      log.debug(scope, "duplicate call; replaying the stored reply");
      call.onDuplicate?.("replayed");
      return { reply: claim.reply, retryable: false };
    }
    if (claim.status === "conflict") {
      call.onDuplicate?.("conflict");
      const message = `${call.subject}: call id ${call.id} was already used for a different request or method; use a new id for a new call`;
      return errorReply(new RpcError("ID_REUSED", message, scope));
    }
    log.debug(scope, "duplicate of a call in flight; waiting for its reply");
    const left = call.deadline - Date.now();
    const reply = left > 0 ? await claim.wait(AbortSignal.timeout(left)) : undefined;
    if (reply) {
      call.onDuplicate?.("joined");
      // The owner's failure (5xx) is not stored, so a later arrival of the id runs it again.
      return { reply, retryable: Number(reply.headers?.[HEADER_ERROR_CODE] ?? 0) >= 500 };
    }
    if (Date.now() >= call.deadline) {
      const message = `${call.subject}: the first execution of call ${call.id} did not finish before the deadline`;
      return errorReply(new RpcError("TIMEOUT", message, scope), false, true);
    }
    // The running owner went away without a reply: claim again, perhaps as the new owner.
  }
}
