/**
 * Helpers that keep tests of ricochet services short: a client and a responder over one in-memory
 * bus in one line, a way to await a call reaching a handler (an event, not a sleep), and a context
 * factory to unit-test a handler with no bus at all.
 *
 * @module
 */
import { pino } from "pino";
import { type Client, type ClientOptions, createClient } from "../client.js";
import type { CallContext } from "../context.js";
import type { AnyContract, MethodName } from "../contract.js";
import { RpcError } from "../errors.js";
import type { ResponderMiddleware } from "../middleware.js";
import {
  createResponder,
  type Handlers,
  type Responder,
  type ResponderOptions,
} from "../responder.js";
import { type MemoryTransport, memoryTransport } from "../transport/memory.js";
import { type FaultyTransport, faultyTransport } from "./faulty.js";

/** The calls that reached a responder's handlers, and a way to await the next. */
export interface CallRecorder {
  /** Put it in the responder's `use` (as the first entry, to see every call). */
  readonly middleware: ResponderMiddleware;
  /** Every call seen so far, in order. */
  readonly seen: readonly CallContext[];
  /** Resolves with the next call to reach a handler (of `method`, if given). */
  next(method?: string): Promise<CallContext>;
}

/** Records the calls that reach a responder's handlers. */
export function recordCalls(): CallRecorder {
  const seen: CallContext[] = [];
  const waiting: Array<{ method: string | undefined; resolve: (ctx: CallContext) => void }> = [];
  return {
    seen,
    middleware: (ctx, _request, next) => {
      seen.push(ctx);
      for (const w of [...waiting]) {
        if (w.method === undefined || w.method === ctx.method) {
          waiting.splice(waiting.indexOf(w), 1);
          w.resolve(ctx);
        }
      }
      return next();
    },
    next: (method) => new Promise((resolve) => waiting.push({ method, resolve })),
  };
}

/** What {@link testPair} returns. */
export interface TestPair<C extends AnyContract> extends AsyncDisposable {
  readonly client: Client<C>;
  readonly responder: Responder;
  /** The bus both sides share. */
  readonly bus: MemoryTransport;
  /** The client's side of the bus: faults here hit its requests. */
  readonly clientBus: FaultyTransport;
  /** The responder's side of the bus: faults here hit its replies; `cut()` isolates it. */
  readonly responderBus: FaultyTransport;
  /** The calls that reached the handlers. */
  readonly calls: CallRecorder;
  /** Closes the client, stops the responder and closes the bus. */
  close(): Promise<void>;
}

/**
 * A started responder for `contract` and a client of it, over one in-memory bus whose two sides take
 * faults, in one line. Dispose of it with `await using` or `close()`.
 *
 * @example
 * await using pair = await testPair(billing, handlers);
 * pair.responderBus.drop({ kind: "reply", times: 1 });
 * await pair.client.charge({ accountId: "a", amountCents: 5 }); // retried, answered once
 */
export async function testPair<C extends AnyContract>(
  contract: C,
  handlers: NoInfer<Handlers<C>>,
  options: {
    client?: Omit<ClientOptions, "transport">;
    responder?: Omit<ResponderOptions, "transport">;
  } = {},
): Promise<TestPair<C>> {
  const bus = memoryTransport();
  const clientBus = faultyTransport(bus);
  const responderBus = faultyTransport(bus);
  const calls = recordCalls();
  const responder = createResponder(contract, handlers, {
    ...options.responder,
    transport: responderBus,
    use: [calls.middleware, ...(options.responder?.use ?? [])],
  });
  await responder.start();
  const client = createClient(contract, { ...options.client, transport: clientBus });
  let closed: Promise<void> | undefined;
  const close = () => {
    closed ??= (async () => {
      await client.close();
      await responder.stop();
      await bus.close();
    })();
    return closed;
  };
  return {
    client,
    responder,
    bus,
    clientBus,
    responderBus,
    calls,
    close,
    [Symbol.asyncDispose]: close,
  };
}

/** A {@link CallContext} for a handler's unit test, and the means to drive it. */
export type TestContext<C extends AnyContract, K extends MethodName<C>> = CallContext<
  C["methods"][K]
> & {
  /** Aborts `signal`, as a passed deadline or a stopping responder would. */
  abort(reason?: unknown): void;
};

/**
 * A context to call a handler with directly, with no bus: `await handlers.charge(request, ctx)`.
 * `fail` and `retryLater` make the same errors a responder's would.
 *
 * @example
 * const ctx = testContext(billing, "charge", { timeoutMs: 100 });
 * await expect(handlers.charge({ accountId: "a", amountCents: 500 }, ctx)).rejects.toMatchObject({ code: "INSUFFICIENT_FUNDS" });
 */
export function testContext<C extends AnyContract, K extends MethodName<C>>(
  contract: C,
  method: K,
  options: {
    /** @default "test-call" */
    id?: string;
    /** @default 1 */
    attempt?: number;
    /** The call's budget: the deadline is now plus this, and `signal` aborts then. @default 30000 */
    timeoutMs?: number;
    /** Headers the call arrived with. @default {} */
    headers?: Record<string, string>;
    /** @default a silent pino logger */
    logger?: import("pino").Logger;
  } = {},
): TestContext<C, K> {
  const id = options.id ?? "test-call";
  const subject = `${contract.service}.${String(method)}`;
  const deadline = Date.now() + (options.timeoutMs ?? 30_000);
  const controller = new AbortController();
  const timer = setTimeout(
    () =>
      controller.abort(
        new RpcError("TIMEOUT", `${subject}: the call's deadline passed (call ${id})`),
      ),
    Math.max(0, deadline - Date.now()),
  );
  timer.unref();
  const ctx = {
    id,
    attempt: options.attempt ?? 1,
    deadline,
    signal: controller.signal,
    headers: Object.freeze({ ...options.headers }),
    logger: (options.logger ?? pino({ level: "silent" })).child({ method, callId: id }),
    service: contract.service,
    method: String(method),
    subject,
    fail: (code: string, details: unknown, message?: string) =>
      new RpcError(code, message ?? `${subject} failed with ${code}`, {
        details,
        callId: id,
        subject,
      }),
    retryLater: (reason?: string) =>
      new RpcError(
        "UNAVAILABLE",
        `${subject}: ${reason ?? "the handler asked to be retried later"} (call ${id}); retry later`,
        { callId: id, subject },
      ),
    abort: (reason?: unknown) => {
      clearTimeout(timer);
      controller.abort(reason ?? new RpcError("CANCELLED", `${subject}: aborted by the test`));
    },
  };
  return ctx as unknown as TestContext<C, K>;
}
