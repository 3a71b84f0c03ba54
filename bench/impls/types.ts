import type { PayloadSet } from "../payload.js";

/** One RPC implementation under test: a responder and a client, each on its own connection. */
export interface Impl {
  /** Makes one call and resolves with the decoded response. */
  call(req: unknown): Promise<unknown>;
  /** Holds replies until `release()` (for the memory measurement), when supported. */
  hold?(): void;
  release?(): void;
  /** Calls the responder has received since `hold()`. */
  arrived?(): number;
  close(): Promise<void>;
}

/** Builds an implementation whose responder answers with `payload.respond` (and, where it validates,
 * checks both directions with `payload`'s schemas). */
export type ImplFactory = (servers: string, payload: PayloadSet) => Promise<Impl>;
