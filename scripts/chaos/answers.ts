/**
 * Notes every reply a responder sends, from outside ricochet: a wrapper around its transport (and
 * durable queue) that remembers which reply subject belongs to which call id and reports each
 * non-progress message published to one. ricochet records a finished call in its dedupe store before
 * it sends the reply, so an execution with no answer line was killed before its result went out.
 *
 * @module
 */

import { readCallMeta } from "../../src/handle.js";
import {
  type DurableQueue,
  HEADER_CALL_ID,
  HEADER_ERROR_CODE,
  HEADER_PROGRESS,
  type Transport,
} from "../../src/index.js";

/** A transport and a queue wrapper that report the answers sent through them. */
export interface AnswerRecorder {
  /** The transport to give the responder. */
  readonly transport: Transport;
  /** Wraps the durable queue to give the responder. */
  queue(queue: DurableQueue): DurableQueue;
}

/**
 * Wraps `transport` so that `onAnswer(id, code)` is told of every reply published to a call's reply
 * subject (`code` is `ok`, or `e<status>` for an error reply).
 */
export function recordAnswers(
  transport: Transport,
  onAnswer: (id: string, code: string) => void,
): AnswerRecorder {
  /** Reply subject → call id, for the calls this responder received and has not answered yet. */
  const callOf = new Map<string, string>();
  const remember = (reply: string | undefined, id: string | undefined) => {
    if (reply !== undefined && id !== undefined) callOf.set(reply, id);
  };
  const wrapped = new Proxy(transport, {
    get(target, key) {
      if (key === "subscribe") {
        const subscribe: Transport["subscribe"] = (subject, onMessage, options) =>
          target.subscribe(
            subject,
            (msg) => {
              remember(msg.reply, readCallMeta(msg, false).id); // the responder's own rule
              onMessage(msg);
            },
            options,
          );
        return subscribe;
      }
      if (key === "publish") {
        const publish: Transport["publish"] = (subject, data, options) => {
          target.publish(subject, data, options);
          const id = callOf.get(subject);
          const headers = options?.headers;
          if (id === undefined || headers?.[HEADER_PROGRESS] !== undefined) return;
          callOf.delete(subject);
          const status = headers?.[HEADER_ERROR_CODE];
          onAnswer(id, status === undefined ? "ok" : `e${status}`);
        };
        return publish;
      }
      return passThrough(target, key);
    },
  });
  return {
    transport: wrapped,
    queue: (queue) =>
      new Proxy(queue, {
        get(target, key) {
          if (key !== "consume") return passThrough(target, key);
          const consume: DurableQueue["consume"] = (service, onCommand, options) =>
            target.consume(
              service,
              (command) => {
                remember(command.reply, command.header(HEADER_CALL_ID));
                onCommand(command);
              },
              options,
            );
          return consume;
        },
      }),
  };
}

/** `target[key]`, with methods bound to `target` (not to the proxy, which private fields refuse). */
function passThrough(target: object, key: string | symbol): unknown {
  const value = Reflect.get(target, key) as unknown;
  return typeof value === "function" ? value.bind(target) : value;
}
