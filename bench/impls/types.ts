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

export type ImplFactory = (servers: string) => Promise<Impl>;
