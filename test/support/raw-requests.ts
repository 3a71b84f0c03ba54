/**
 * Many requests from a plain nats.js connection, as a peer in another language would send them: each
 * with its own headers and a reply subject under one inbox, at most `window` in flight, the next sent
 * as each reply arrives. Fast enough to put tens of thousands of calls through a responder in seconds.
 */
import { createInbox, type NatsConnection, headers as natsHeaders } from "@nats-io/nats-core";

/** One request to send. */
export interface RawRequest {
  readonly body: Uint8Array | string;
  readonly headers?: Readonly<Record<string, string>>;
}

/** A reply as it arrived: its body, its headers, and the error code when it is an error reply. */
export interface RawReply {
  readonly data: string;
  readonly headers: Readonly<Record<string, string>>;
  /** `code` of the error body when the reply has `Nats-Service-Error-Code`, else `undefined`. */
  readonly code: string | undefined;
  /** `details` of the error body, when it is an error reply. */
  readonly details: unknown;
}

/**
 * Sends every request to `subject` with at most `window` awaiting their replies, and resolves with
 * the replies in request order. Rejects if they have not all arrived within `timeoutMs`.
 */
export async function sendAll(
  nc: NatsConnection,
  subject: string,
  requests: readonly RawRequest[],
  { window = 256, timeoutMs = 15_000 }: { window?: number; timeoutMs?: number } = {},
): Promise<RawReply[]> {
  if (requests.length === 0) return [];
  const inbox = createInbox();
  const replies: Array<RawReply | undefined> = new Array(requests.length);
  let received = 0;
  let sent = 0;
  const send = () => {
    const i = sent++;
    const request = requests[i] as RawRequest;
    const h = natsHeaders();
    for (const [k, v] of Object.entries(request.headers ?? {})) h.set(k, v);
    nc.publish(subject, request.body, { reply: `${inbox}.${i}`, headers: h });
  };
  let timer: NodeJS.Timeout | undefined;
  const done = new Promise<void>((resolve, reject) => {
    const sub = nc.subscribe(`${inbox}.*`, {
      callback: (err, m) => {
        if (err) return reject(err);
        const i = Number(m.subject.slice(inbox.length + 1));
        if (replies[i] !== undefined) return; // one reply per request is all a request takes
        const headers: Record<string, string> = {};
        for (const k of m.headers?.keys() ?? []) headers[k] = m.headers?.get(k) ?? "";
        let code: string | undefined;
        let details: unknown;
        if (headers["Nats-Service-Error-Code"] !== undefined) {
          const body = JSON.parse(m.string()) as { code?: string; details?: unknown };
          code = body.code;
          details = body.details;
        }
        replies[i] = { data: m.string(), headers, code, details };
        if (++received === requests.length) {
          sub.unsubscribe();
          resolve();
        } else if (sent < requests.length) send();
      },
    });
    timer = setTimeout(() => {
      sub.unsubscribe();
      reject(
        new Error(
          `sendAll: ${received} of ${requests.length} replies (${sent} sent) after ${timeoutMs} ms`,
        ),
      );
    }, timeoutMs);
  });
  try {
    await nc.flush(); // the reply subscription is in place before any request goes out
    while (sent < Math.min(window, requests.length)) send();
    await done;
    return replies as RawReply[];
  } finally {
    clearTimeout(timer);
  }
}
