/**
 * Header sets for publishing on nats.js without its general-purpose `MsgHdrsImpl`, whose per-header
 * canonicalisation, key searches and map building were a visible share of a call's cost. The set
 * here is a plain record, checked once, and encoded straight to the NATS/1.0 header block.
 *
 * @module
 */
import { Buffer } from "node:buffer";
import type { Match, MsgHdrs } from "@nats-io/nats-core";
import { canonicalName } from "./headers.js";

/**
 * A {@link MsgHdrs} over a record, with the `encode()` nats.js calls when publishing. It does not check
 * its content: callers pass records that `assertValidHeaders` accepted.
 * Lookups are exact and case-sensitive; `set`, `append` and `delete` change the record.
 */
export class RecordHeaders implements MsgHdrs {
  readonly hasError = false;
  readonly status = "";
  readonly code = 0;
  readonly description = "";

  constructor(private readonly record: Record<string, string>) {}

  get(k: string, _match?: Match): string {
    return this.record[k] ?? "";
  }
  last(k: string, match?: Match): string {
    return this.get(k, match);
  }
  has(k: string, _match?: Match): boolean {
    return Object.hasOwn(this.record, k);
  }
  set(k: string, v: string, _match?: Match): void {
    this.record[k] = v;
  }
  append(k: string, v: string, match?: Match): void {
    this.set(k, v, match);
  }
  delete(k: string, _match?: Match): void {
    delete this.record[k];
  }
  keys(): string[] {
    return Object.keys(this.record);
  }
  values(k: string, _match?: Match): string[] {
    return this.has(k) ? [this.record[k] as string] : [];
  }
  *[Symbol.iterator](): IterableIterator<[string, string[]]> {
    for (const k in this.record) yield [k, [this.record[k] as string]];
  }
  /** The NATS/1.0 header block, as nats.js sends it. */
  encode(): Uint8Array {
    let s = "NATS/1.0";
    for (const k in this.record) s += `\r\n${k}: ${this.record[k]}`;
    // From Buffer's pool, not an ArrayBuffer of its own (see `encodeBody`).
    return Buffer.from(`${s}\r\n\r\n`, "utf8");
  }
}

/**
 * A message's headers, or `undefined` when it has none or they cannot be parsed. nats.js decodes
 * headers lazily and throws on a malformed block (a name with a space, say), which nats-server passes
 * through; such a message is then served as one without headers rather than allowed to throw inside
 * the connection's reader.
 */
export function headersOf(msg: { readonly headers?: MsgHdrs | undefined }): MsgHdrs | undefined {
  try {
    return msg.headers;
  } catch {
    return undefined;
  }
}

/**
 * Each header's value, as a record: nats.js's own lookups search and allocate per call. The protocol's
 * own headers are filed under their canonical spelling whatever case they came in (see
 * `canonicalName`). A header sent more than once, under one spelling or several, has its values joined
 * with a line feed, which no single value can hold: unambiguous, and a repeated protocol header breaks
 * its rule rather than being read by its first value.
 */
export function recordOf(h: MsgHdrs): Record<string, string> {
  const record: Record<string, string> = {};
  for (const [key, values] of h) {
    if (values.length === 0) continue;
    const name = canonicalName(key);
    const value = values.length === 1 ? (values[0] as string) : values.join("\n");
    record[name] = Object.hasOwn(record, name) ? `${record[name]}\n${value}` : value;
  }
  return record;
}
