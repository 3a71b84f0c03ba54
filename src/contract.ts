/**
 * Contracts: one module of zod schemas, imported by both the client and the responder. Every type on
 * either side is inferred from it.
 *
 * @module
 */
import type { $ZodType, input, output } from "zod/v4/core";
import { isBuiltInCode, type RpcCode, type RpcError } from "./errors.js";

/** A method's contract errors: code → schema of the error's `details`. */
export type ErrorSchemas = Record<string, $ZodType>;

/** One method of a contract: its request and response schemas and the errors it may fail with. */
export interface MethodDefinition<
  Req extends $ZodType = $ZodType,
  Res extends $ZodType = $ZodType,
  Errs extends ErrorSchemas = ErrorSchemas,
> {
  /** Schema of the request body. */
  readonly request: Req;
  /** Schema of the successful reply body. */
  readonly response: Res;
  /** Contract error codes (SCREAMING_SNAKE) and the schema of each one's `details`. */
  readonly errors: Errs;
  /** A sentence on what the method does; shown in discovery. */
  readonly description: string | undefined;
  /** Whether its responders deduplicate calls by id (see {@link method}'s `dedupe`). */
  readonly dedupe: boolean;
}

/** Any method definition. */
// biome-ignore lint/suspicious/noExplicitAny: the widest method type needs `any` in its schema slots for variance
export type AnyMethod = MethodDefinition<any, any, any>;

/** A contract: a service name, a version, and its methods. */
export interface Contract<
  S extends string = string,
  M extends Record<string, AnyMethod> = Record<string, AnyMethod>,
> {
  /** The service name; methods are served at `<service>.<method>`. */
  readonly service: S;
  /** The contract's semantic version. */
  readonly version: string;
  /** A sentence on what the service does; shown in discovery. */
  readonly description: string;
  /** The methods, by name. */
  readonly methods: M;
}

/** Any contract. */
export type AnyContract = Contract<string, Record<string, AnyMethod>>;

/** The method names of a contract. */
export type MethodName<C extends AnyContract> = keyof C["methods"] & string;

/** What a caller passes to a method (the request schema's input type). */
export type InferRequest<C extends AnyContract, K extends MethodName<C>> = input<
  C["methods"][K]["request"]
>;

/** What a caller receives from a method (the response schema's output type). */
export type InferResponse<C extends AnyContract, K extends MethodName<C>> = output<
  C["methods"][K]["response"]
>;

/** The contract error codes a method declares. */
export type ContractErrorCode<M extends AnyMethod> = keyof M["errors"] & string;

/**
 * Every error a call to a method can reject with: one member per contract code, with typed `details`,
 * plus the built-in codes. Narrow it on `err.code`.
 *
 * @example
 * catch (e) {
 *   const err = e as CallError<typeof billing, "charge">;
 *   if (err.code === "INSUFFICIENT_FUNDS") err.details.balanceCents; // typed
 * }
 */
export type CallError<C extends AnyContract, K extends MethodName<C>> =
  | {
      [Code in ContractErrorCode<C["methods"][K]>]: RpcError<
        Code,
        output<C["methods"][K]["errors"][Code]>
      >;
    }[ContractErrorCode<C["methods"][K]>]
  | RpcError<RpcCode, unknown>;

const NAME = /^[A-Za-z0-9_-]+$/;
const ERROR_CODE = /^[A-Z][A-Z0-9_]*$/;
const SEMVER =
  /^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?$/;

function isSchema(value: unknown): value is $ZodType {
  return typeof value === "object" && value !== null && "_zod" in value;
}

/**
 * Declares one method of a contract. Pure: it checks its argument and returns it, typed.
 *
 * @throws TypeError when a schema is not a zod 4 schema, or an error code is not SCREAMING_SNAKE or
 *   collides with a built-in code.
 * @example
 * const charge = method({
 *   request: z.object({ accountId: z.string(), amountCents: z.number().int().positive() }),
 *   response: z.object({ chargeId: z.string() }),
 *   errors: { INSUFFICIENT_FUNDS: z.object({ balanceCents: z.number() }) },
 * });
 */
export function method<
  Req extends $ZodType,
  Res extends $ZodType,
  // biome-ignore lint/complexity/noBannedTypes: `{}` is the exact type of "no errors declared"
  Errs extends ErrorSchemas = {},
>(definition: {
  /** Schema of the request body. */
  request: Req;
  /** Schema of the successful reply body. */
  response: Res;
  /** Contract error codes and the schema of each one's `details`. */
  errors?: Errs;
  /** A sentence on what the method does. */
  description?: string;
  /**
   * `false` for a method that is safe to run twice, such as a read: its responders do not
   * deduplicate its calls, which saves the dedupe store's work (with `kvDedupe`, two KV writes a call).
   * A retried call may then run its handler again.
   * @default true
   */
  dedupe?: boolean;
}): MethodDefinition<Req, Res, Errs> {
  if (!isSchema(definition.request))
    throw new TypeError("method(): `request` must be a zod 4 schema");
  if (!isSchema(definition.response))
    throw new TypeError("method(): `response` must be a zod 4 schema");
  const errors = (definition.errors ?? {}) as Errs;
  for (const [code, schema] of Object.entries(errors)) {
    if (!ERROR_CODE.test(code)) {
      throw new TypeError(
        `method(): error code '${code}' must be SCREAMING_SNAKE, like 'INSUFFICIENT_FUNDS'`,
      );
    }
    if (isBuiltInCode(code)) {
      throw new TypeError(`method(): error code '${code}' is built in; pick a name of your own`);
    }
    if (!isSchema(schema))
      throw new TypeError(`method(): the schema of error '${code}' must be a zod 4 schema`);
  }
  return Object.freeze({
    request: definition.request,
    response: definition.response,
    errors,
    description: definition.description,
    dedupe: definition.dedupe ?? true,
  });
}

/**
 * Declares a contract: the service name (the subject prefix), a semantic version and the methods.
 * Import the result on both sides.
 *
 * @throws TypeError when the service or a method name is not a single subject token of
 *   `[A-Za-z0-9_-]`, or the version is not semver.
 * @example
 * export const billing = defineContract({ service: "billing", version: "1.0.0", methods: { charge } });
 */
export function defineContract<
  const S extends string,
  M extends Record<string, AnyMethod>,
>(definition: {
  /** The service name; methods live at `<service>.<method>`. Letters, digits, `-` and `_`. */
  service: S;
  /** Semantic version of the contract, e.g. `1.0.0`. */
  version: string;
  /** A sentence on what the service does. @default "" */
  description?: string;
  /** The methods, by name (letters, digits, `-` and `_`). */
  methods: M;
}): Contract<S, M> {
  const { service, version, methods } = definition;
  if (typeof service !== "string" || !NAME.test(service)) {
    throw new TypeError(
      `defineContract(): service '${service}' must be letters, digits, '-' or '_' (it is a subject token)`,
    );
  }
  if (typeof version !== "string" || !SEMVER.test(version)) {
    throw new TypeError(
      `defineContract(): version '${version}' must be a semantic version such as '1.0.0'`,
    );
  }
  const names = Object.keys(methods ?? {});
  if (names.length === 0) throw new TypeError("defineContract(): declare at least one method");
  for (const name of names) {
    if (!NAME.test(name)) {
      throw new TypeError(
        `defineContract(): method '${name}' must be letters, digits, '-' or '_' (it is a subject token)`,
      );
    }
    const m = methods[name] as unknown;
    if (typeof m !== "object" || m === null || !isSchema((m as AnyMethod).request)) {
      throw new TypeError(`defineContract(): method '${name}' must be made with method()`);
    }
  }
  return Object.freeze({ service, version, description: definition.description ?? "", methods });
}
