/**
 * The conformance suite every Transport runs (like Hono's shared router cases): the semantics the RPC
 * layer relies on, checked the same way on each adapter.
 */
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { PayloadTooLargeError } from "../src/transport/errors.js";
import type { Transport, TransportMessage } from "../src/transport/types.js";

/** Two endpoints on one bus (two connections for NATS; one instance twice in memory). */
export interface TransportPair {
  a: Transport;
  b: Transport;
  close(): Promise<void>;
}

const text = (s: string) => new TextEncoder().encode(s);
const str = (d: Uint8Array) => new TextDecoder().decode(d);

/** Resolves with the first `n` messages a subject receives on `t`. */
function collect(t: Transport, subject: string, n: number, queue?: string) {
  const got: TransportMessage[] = [];
  let done!: () => void;
  const all = new Promise<void>((r) => (done = r));
  const sub = t.subscribe(
    subject,
    (m) => {
      got.push(m);
      if (got.length === n) done();
    },
    queue === undefined ? {} : { queue },
  );
  return { got, all, sub };
}

export function transportSuite(name: string, makePair: () => Promise<TransportPair>) {
  describe(`transport conformance: ${name}`, () => {
    let pair: TransportPair;
    beforeEach(async () => {
      pair = await makePair();
    });
    afterEach(async () => {
      await pair.close();
    });
    const unique = (s: string) => `t${Math.random().toString(36).slice(2, 10)}.${s}`;

    it("delivers payload, reply subject and headers to a subscriber on another endpoint", async () => {
      const subject = unique("hello");
      const inbox = collect(pair.b, subject, 1);
      await pair.b.flush();
      pair.a.publish(subject, text("hi"), {
        reply: "reply.here",
        headers: { "X-One": "1", "Nats-Msg-Id": "abc" },
      });
      await inbox.all;
      const m = inbox.got[0] as TransportMessage;
      expect(m.subject).toBe(subject);
      expect(str(m.data)).toBe("hi");
      expect(m.reply).toBe("reply.here");
      expect(m.status).toBe(0);
      expect(m.header("X-One")).toBe("1");
      expect(m.header("Nats-Msg-Id")).toBe("abc");
      expect(m.header("Absent")).toBeUndefined();
      expect(m.headers()).toMatchObject({ "X-One": "1", "Nats-Msg-Id": "abc" });
    });

    it("delivers a message without headers or reply as plain", async () => {
      const subject = unique("plain");
      const inbox = collect(pair.b, subject, 1);
      await pair.b.flush();
      pair.a.publish(subject, text("{}"));
      await inbox.all;
      const m = inbox.got[0] as TransportMessage;
      expect(m.reply).toBeUndefined();
      expect(m.header("Nats-Msg-Id")).toBeUndefined();
      expect(m.headers()).toEqual({});
    });

    it("matches '*' to one token and '>' to the rest", async () => {
      const base = unique("w");
      const star = collect(pair.b, `${base}.*`, 1);
      const tail = collect(pair.b, `${base}.>`, 2);
      await pair.b.flush();
      pair.a.publish(`${base}.x.y`, text("deep"));
      pair.a.publish(`${base}.x`, text("one"));
      await Promise.all([star.all, tail.all]);
      expect(star.got.map((m) => str(m.data))).toEqual(["one"]);
      expect(tail.got.map((m) => str(m.data)).sort()).toEqual(["deep", "one"]);
    });

    it("gives each message to one member of a queue group and to every plain subscriber", async () => {
      const subject = unique("work");
      const n = 40;
      const seen: string[][] = [[], []];
      let total = 0;
      let done!: () => void;
      const all = new Promise<void>((r) => (done = r));
      const member = (i: number) => (m: TransportMessage) => {
        seen[i]?.push(str(m.data));
        if (++total === n) done();
      };
      pair.b.subscribe(subject, member(0), { queue: "q" });
      pair.b.subscribe(subject, member(1), { queue: "q" });
      const watcher = collect(pair.b, subject, n);
      await pair.b.flush();
      for (let i = 0; i < n; i++) pair.a.publish(subject, text(String(i)));
      await Promise.all([all, watcher.all]);
      const both = [...(seen[0] ?? []), ...(seen[1] ?? [])].sort();
      expect(both).toEqual(Array.from({ length: n }, (_, i) => String(i)).sort());
      expect(seen[0]?.length).toBeGreaterThan(0);
      expect(seen[1]?.length).toBeGreaterThan(0);
      expect(watcher.got).toHaveLength(n);
    });

    it("answers a request to a subject nobody serves with status 503 on the reply subject", async () => {
      const inbox = `${pair.a.createInbox()}.1`;
      const replies = collect(pair.a, inbox, 1);
      pair.a.publish(unique("nobody"), text("{}"), {
        reply: inbox,
        headers: { "Nats-Msg-Id": "x" },
      });
      await replies.all;
      expect(replies.got[0]?.status).toBe(503);
      expect(replies.got[0]?.data.length).toBe(0);
    });

    it("stops delivery after drain, so requests then find no responders", async () => {
      const subject = unique("drained");
      const inbox = collect(pair.b, subject, 1);
      await pair.b.flush();
      await inbox.sub.drain();
      await pair.b.flush();
      const reply = `${pair.a.createInbox()}.1`;
      const replies = collect(pair.a, reply, 1);
      pair.a.publish(subject, text("late"), { reply });
      await replies.all;
      expect(replies.got[0]?.status).toBe(503);
      expect(inbox.got).toHaveLength(0);
    });

    it("throws PayloadTooLargeError for a payload over maxPayload, and sends nothing", () => {
      const big = new Uint8Array(pair.a.maxPayload + 1);
      expect(() => pair.a.publish(unique("big"), big)).toThrow(PayloadTooLargeError);
    });

    it("makes a different inbox each time", () => {
      const inboxes = new Set(Array.from({ length: 50 }, () => pair.a.createInbox()));
      expect(inboxes.size).toBe(50);
    });
  });
}
