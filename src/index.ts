/**
 * ricochet: typed request-reply RPC over NATS. One zod contract shared by both sides; a typed client
 * with deadlines and safe retries; a validating responder.
 *
 * @module
 */

// Metrics
export type { RetryInfo } from "./call.js";
// Client
export type {
  CallOptions,
  Client,
  ClientMethod,
  ClientOptions,
  DurableClientOptions,
} from "./client.js";
export { createClient } from "./client.js";
// Responder
export type { CallContext } from "./context.js";
// Contracts
export type {
  AnyContract,
  AnyMethod,
  CallError,
  Contract,
  ContractErrorCode,
  ErrorSchemas,
  InferRequest,
  InferResponse,
  MethodDefinition,
  MethodName,
} from "./contract.js";
export { defineContract, method } from "./contract.js";
export type { KvBucket, KvDedupeOptions, KvDedupeStore } from "./dedupe/kv.js";
export { kvDedupe } from "./dedupe/kv.js";
// Deduplication
export type { MemoryDedupeOptions, MemoryDedupeStore } from "./dedupe/memory.js";
export { memoryDedupe } from "./dedupe/memory.js";
export type { Claim, DedupeStore, StoredReply } from "./dedupe/types.js";
export type { DurableOutcome } from "./durable.js";
// Errors
export type { RpcCode, RpcErrorOptions } from "./errors.js";
export { isRpcError, RPC_CODES, RpcError } from "./errors.js";
export type {
  MethodMetrics,
  Metrics,
  MetricsOptions,
  MetricsSnapshot,
  PromClientModule,
} from "./metrics.js";
export { createMetrics, DEFAULT_BUCKETS } from "./metrics.js";
// Middleware and tracing
export type { ClientMiddleware, OutgoingCall, ResponderMiddleware } from "./middleware.js";
export type { DedupeOutcome } from "./once.js";
// Wire protocol (header names, for peers and middleware)
export {
  HEADER_ATTEMPT,
  HEADER_CALL_ID,
  HEADER_ERROR,
  HEADER_ERROR_CODE,
  HEADER_PROGRESS,
  HEADER_TIMEOUT,
} from "./protocol.js";
export type { Handler, Handlers, Responder, ResponderOptions } from "./responder.js";
export { createResponder } from "./responder.js";
export type { RetryOptions } from "./retry.js";
export type { OtelApi, TracingOptions } from "./tracing.js";
export { clientTracing, responderTracing } from "./tracing.js";
export type { DeadLetter, DeadLetters, DeadLettersOptions } from "./transport/dead-letters.js";
export { deadLetters } from "./transport/dead-letters.js";
export { PayloadTooLargeError } from "./transport/errors.js";
// Durable calls
export type { JetStreamContext, JetStreamQueueOptions } from "./transport/jetstream.js";
export { jetstreamQueue } from "./transport/jetstream.js";
// Transports
export type { MemoryTransport, MemoryTransportOptions } from "./transport/memory.js";
export { memoryTransport } from "./transport/memory.js";
export type { NatsTransportOptions } from "./transport/nats.js";
export { natsTransport } from "./transport/nats.js";
export type {
  DeadLetterReason,
  DurableQueue,
  EnqueueReceipt,
  QueueConsumeOptions,
  QueueConsumer,
  QueuedCommand,
} from "./transport/queue.js";
export { HEADER_REPLY } from "./transport/queue.js";
export type {
  PublishOptions,
  SubscribeOptions,
  Transport,
  TransportMessage,
  TransportSubscription,
} from "./transport/types.js";
