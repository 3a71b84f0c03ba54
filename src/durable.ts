/**
 * What a responder does with a durable command once it has an answer: reply and acknowledge a final
 * one, have a failed one delivered again, and move a poison or exhausted one to the dead-letter
 * subject, telling its caller why.
 *
 * @module
 */
import type { Logger } from "pino";
import type { StoredReply } from "./dedupe/types.js";
import { RpcError } from "./errors.js";
import { errorReply } from "./execute.js";
import { decodeError, HEADER_CALL_ID, HEADER_ERROR, HEADER_ERROR_CODE } from "./protocol.js";
import type { QueuedCommand } from "./transport/queue.js";

/** What handling a call produced: the reply, and the error when the command itself is unusable. */
export interface Answer {
  reply: StoredReply;
  /** Whether another delivery might succeed (the handler threw or ran out of time, or never ran). */
  retryable: boolean;
  /** Set when the command cannot be decoded or validated: no delivery will ever succeed. */
  poison?: RpcError;
  /** Failed for now, for a reason outside the handler: tried again without counting a delivery. */
  transient?: boolean;
  /** Settles once the dedupe store recorded the call, when the reply went out before that. */
  recorded?: Promise<void>;
}

/** What happened to a durable command after a failed run. */
export type DurableOutcome = "redelivered" | "retried" | "deadLettered";

/** What settling needs from the responder. */
export interface SettleEnv {
  /** Deliveries allowed per command. */
  maxDeliver: number;
  /** `<service>.<method>`, to name the command in messages (its subject is the queue's). */
  name: string;
  /** How long a command failing for a transient reason is tried again, from when it was stored. */
  transientForMs: number;
  /** Told when a failed command is delivered again or dead-lettered (for metrics). */
  onOutcome?: ((outcome: DurableOutcome) => void) | undefined;
  /** Sends a reply to the command's caller (and counts it in the statistics). */
  send(reply: StoredReply): void;
  log: Logger;
}

/** The code and message of a failed answer that another delivery might turn into a success. */
function failedForNow(answer: Answer): { code: string; message: string } | undefined {
  const status = answer.reply.headers?.[HEADER_ERROR_CODE];
  if (!answer.retryable || status === undefined) return undefined;
  const { code, message } = decodeError(
    Number(status),
    answer.reply.headers?.[HEADER_ERROR],
    answer.reply.data,
  );
  return { code, message };
}

/**
 * Settles `command` with `answer` (or, with no answer, as a command whose earlier delivery never
 * finished and that has no deliveries left). Never throws.
 */
export async function settleCommand(
  command: QueuedCommand,
  answer: Answer | undefined,
  env: SettleEnv,
): Promise<void> {
  const call = callScope(command, env.name);
  const scope = { ...call, delivery: command.delivery };
  try {
    if (answer?.poison) {
      const err = answer.poison;
      const deadLetter = await command.deadLetter({ code: err.code, message: err.message });
      env.onOutcome?.("deadLettered");
      env.log.warn({ ...scope, deadLetter, code: err.code }, "poison command dead-lettered");
      const details =
        typeof err.details === "object" && err.details !== null ? { ...err.details } : {};
      env.send(
        errorReply(
          new RpcError(
            err.code,
            `${err.message}; the command was moved to ${deadLetter} and will not be retried`,
            { ...call, details: { ...details, deadLetter } },
          ),
        ).reply,
      );
      return;
    }
    const failure = answer
      ? failedForNow(answer)
      : {
          code: "TIMEOUT",
          message: `${env.name}: delivery ${command.delivery - 1} did not finish (its responder stopped, or held it past the ack wait)`,
        };
    if (failure === undefined) {
      // Only an answer can be final: without one, `failure` is always set.
      if (answer) env.send(answer.reply);
      // Acknowledged once the dedupe store has the call: a redelivery must find it there.
      if (answer?.recorded) await answer.recorded;
      command.ack();
      return;
    }
    const last = answer === undefined ? command.delivery - 1 : command.delivery;
    // Still failing for a transient reason: the responder tried it again until transientForMs.
    const expired = answer?.transient === true;
    if (!expired && last < env.maxDeliver) {
      env.log.warn({ ...scope, code: failure.code }, "durable command failed; it will be retried");
      command.retry();
      env.onOutcome?.("redelivered");
      return;
    }
    const deadLetter = await command.deadLetter(failure);
    env.onOutcome?.("deadLettered");
    env.log.error(
      { ...scope, deadLetter, code: failure.code },
      expired
        ? "durable command failed for a transient reason for longer than transientForMs; dead-lettered"
        : "durable command failed on every delivery; dead-lettered",
    );
    const why = expired
      ? `kept failing for a transient reason for ${Math.round(env.transientForMs / 1000)} s after it was stored`
      : `failed on all ${last} deliveries`;
    env.send(
      errorReply(
        new RpcError(
          "DEAD_LETTERED",
          `${env.name} ${why} (last: ${failure.code}: ${failure.message}); the command was moved to ${deadLetter}: fix the cause, then republish it from there`,
          {
            ...call,
            details: { deadLetter, deliveries: last, lastCode: failure.code },
          },
        ),
      ).reply,
    );
  } catch (err) {
    // The dead-letter store refused it; the command stays queued and is delivered again later.
    env.log.error({ ...scope, err }, "could not dead-letter a durable command; it will be retried");
  }
}

function callScope(command: QueuedCommand, name: string): { callId?: string; subject: string } {
  const callId = command.header(HEADER_CALL_ID);
  return callId === undefined ? { subject: name } : { callId, subject: name };
}
